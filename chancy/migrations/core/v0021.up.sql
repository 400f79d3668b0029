-- The claim indexes carry scheduled_at as their last key column, so that a claim tells a job
-- that is not due yet (scheduled for later, or retrying after a backoff) from a due one in
-- the index, without reading the row. A claim reads a queue's waiting jobs in claim order
-- (priority, then id: the order of creation) and stops at its limit; jobs scheduled for later
-- sit in that order among the due ones, and in front of every job pushed after them. Before
-- this each of them cost the claim a visit to its row, on every claim: with 100,000 jobs
-- scheduled for tomorrow in front of 20,000 due ones, a drain claimed at 46-49 us per job
-- instead of 21-22, and a claim that found nothing read 100,000 rows (12.5 ms instead of
-- 3.1 ms). The order of the claim is unchanged: scheduled_at follows the unique id, so it
-- sorts nothing, it is only there to be checked (tests/store/test_plans.py).
-- The jobs table is locked outright first: the index builds below take SHARE and the index
-- drops ACCESS EXCLUSIVE, and a live worker's claim, between its pick (ROW SHARE) and its
-- update (ROW EXCLUSIVE), would otherwise wait for this migration while it waits for the
-- claim (a deadlock; tests/test_migrate.py). Locked first, the migration waits for the claim.
LOCK TABLE {prefix}jobs IN ACCESS EXCLUSIVE MODE;

CREATE INDEX {prefix}jobs_claim_due ON {prefix}jobs (queue, priority DESC, id, scheduled_at)
    WHERE state IN ('pending', 'retrying');
DROP INDEX {prefix}jobs_claim;
ALTER INDEX {prefix}jobs_claim_due RENAME TO {prefix}jobs_claim;

CREATE INDEX {prefix}jobs_claim_key_due
    ON {prefix}jobs (queue, partition_key, priority DESC, id, scheduled_at)
    WHERE state IN ('pending', 'retrying') AND partition_key IS NOT NULL;
DROP INDEX {prefix}jobs_claim_key;
ALTER INDEX {prefix}jobs_claim_key_due RENAME TO {prefix}jobs_claim_key;
