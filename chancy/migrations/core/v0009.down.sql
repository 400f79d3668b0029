-- The jobs table is locked outright first: the index builds below take SHARE and the index
-- drops ACCESS EXCLUSIVE, and a live worker's claim, between its pick (ROW SHARE) and its
-- update (ROW EXCLUSIVE), would otherwise wait for this migration while it waits for the
-- claim (a deadlock; tests/test_migrate.py). Locked first, the migration waits for the claim.
LOCK TABLE {prefix}jobs IN ACCESS EXCLUSIVE MODE;

ALTER TABLE {prefix}workers
    DROP COLUMN IF EXISTS started_at,
    DROP COLUMN IF EXISTS hostname,
    DROP COLUMN IF EXISTS pid,
    DROP COLUMN IF EXISTS version;

ALTER TABLE {prefix}leader DROP COLUMN IF EXISTS term;

ALTER TABLE {prefix}queues ALTER COLUMN polling_interval TYPE integer
    USING ceil(polling_interval)::integer;

CREATE INDEX IF NOT EXISTS {prefix}idx_jobs_queue_state ON {prefix}jobs (queue, state);
DROP INDEX IF EXISTS {prefix}jobs_finished;
DROP INDEX IF EXISTS {prefix}jobs_running;
DROP INDEX IF EXISTS {prefix}jobs_claim;

ALTER TABLE {prefix}jobs RESET (fillfactor);

ALTER TABLE {prefix}jobs
    DROP COLUMN IF EXISTS recoveries,
    DROP COLUMN IF EXISTS result;
