-- The jobs table is locked outright first: the index builds below take SHARE and the index
-- drops ACCESS EXCLUSIVE, and a live worker's claim, between its pick (ROW SHARE) and its
-- update (ROW EXCLUSIVE), would otherwise wait for this migration while it waits for the
-- claim (a deadlock; tests/test_migrate.py). Locked first, the migration waits for the claim.
LOCK TABLE {prefix}jobs IN ACCESS EXCLUSIVE MODE;

CREATE INDEX {prefix}jobs_claim_old ON {prefix}jobs (queue, priority DESC, id)
    WHERE state IN ('pending', 'retrying');
DROP INDEX {prefix}jobs_claim;
ALTER INDEX {prefix}jobs_claim_old RENAME TO {prefix}jobs_claim;

CREATE INDEX {prefix}jobs_claim_key_old ON {prefix}jobs (queue, partition_key, priority DESC, id)
    WHERE state IN ('pending', 'retrying') AND partition_key IS NOT NULL;
DROP INDEX {prefix}jobs_claim_key;
ALTER INDEX {prefix}jobs_claim_key_old RENAME TO {prefix}jobs_claim_key;
