CREATE INDEX {prefix}jobs_claim_old ON {prefix}jobs (queue, priority DESC, id)
    WHERE state IN ('pending', 'retrying');
DROP INDEX {prefix}jobs_claim;
ALTER INDEX {prefix}jobs_claim_old RENAME TO {prefix}jobs_claim;

CREATE INDEX {prefix}jobs_claim_key_old ON {prefix}jobs (queue, partition_key, priority DESC, id)
    WHERE state IN ('pending', 'retrying') AND partition_key IS NOT NULL;
DROP INDEX {prefix}jobs_claim_key;
ALTER INDEX {prefix}jobs_claim_key_old RENAME TO {prefix}jobs_claim_key;
