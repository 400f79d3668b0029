DROP TABLE IF EXISTS {prefix}limit_starts;

DROP INDEX IF EXISTS {prefix}jobs_claim_key;

ALTER TABLE {prefix}queues
    DROP COLUMN IF EXISTS global_concurrency,
    DROP COLUMN IF EXISTS partition_concurrency,
    DROP COLUMN IF EXISTS partition_rate_limit,
    DROP COLUMN IF EXISTS partition_rate_limit_window;

ALTER TABLE {prefix}jobs DROP COLUMN IF EXISTS partition_key;
