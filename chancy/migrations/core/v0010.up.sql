-- Flow control: a partition key on jobs, global and per-key limits on queues, and the log of
-- starts that rate limits count.
ALTER TABLE {prefix}jobs ADD COLUMN partition_key text;

ALTER TABLE {prefix}queues
    ADD COLUMN global_concurrency integer,
    ADD COLUMN partition_concurrency integer,
    ADD COLUMN partition_rate_limit integer,
    ADD COLUMN partition_rate_limit_window integer;

-- The claim of a queue with per-key limits walks the distinct keys of its waiting jobs (a
-- skip-scan: one index descent per key) and takes the head of each key that has room, so a
-- key with thousands of jobs at the front costs one descent, not a scan. Jobs without a key
-- are not in this index: pushes to ordinary queues do not pay for it.
CREATE INDEX {prefix}jobs_claim_key ON {prefix}jobs (queue, partition_key, priority DESC, id)
    WHERE state IN ('pending', 'retrying') AND partition_key IS NOT NULL;

-- Starts counted by rate limits: one row per claim (per key for per-key limits; NULL key for
-- the queue's own limit), kept for one window. A logged table, so a server restart does not
-- forget a window and allow a burst.
CREATE TABLE {prefix}limit_starts (
    queue text NOT NULL,
    partition_key text,
    started_at timestamptz NOT NULL,
    n integer NOT NULL
);

CREATE INDEX {prefix}limit_starts_window ON {prefix}limit_starts (queue, partition_key, started_at);
