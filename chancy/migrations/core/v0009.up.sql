-- First, tables made by Chancy (its versions 1 to 8: Chancy 0.20 to 0.26) take the exact shape
-- of chancy's version 8 (v0008.up.sql); on tables chancy made itself nothing here changes
-- anything. Chancy's tables differ in details that matter: JSON columns were json before its
-- version 5, jobs.state was varchar(25), priorities, attempts, queue tags and executor options
-- could be NULL, the leader table had a serial id and no last_seen, and the unique key's index
-- named the states it excludes, which an ON CONFLICT that names the live states cannot use.
-- Its own rate-limit windows (queue_rate_limits) are not used by chancy (see v0010).
DROP INDEX IF EXISTS {prefix}idx_jobs_fetch_prune;
DROP INDEX IF EXISTS {prefix}jobs_unique_key;
DROP TABLE IF EXISTS {prefix}queue_rate_limits;

UPDATE {prefix}jobs
SET priority = coalesce(priority, 0),
    attempts = coalesce(attempts, 0),
    max_attempts = coalesce(max_attempts, 1)
WHERE priority IS NULL OR attempts IS NULL OR max_attempts IS NULL;

-- A cast to the column's own type rewrites nothing: tables already in jsonb stay as they are.
ALTER TABLE {prefix}jobs
    ALTER COLUMN kwargs TYPE jsonb USING kwargs::jsonb,
    ALTER COLUMN kwargs SET DEFAULT '{}'::jsonb,
    ALTER COLUMN limits TYPE jsonb USING limits::jsonb,
    ALTER COLUMN limits SET DEFAULT '[]'::jsonb,
    ALTER COLUMN meta TYPE jsonb USING meta::jsonb,
    ALTER COLUMN meta SET DEFAULT '{}'::jsonb,
    ALTER COLUMN errors TYPE jsonb USING errors::jsonb,
    ALTER COLUMN errors SET DEFAULT '[]'::jsonb,
    ALTER COLUMN state TYPE text,
    ALTER COLUMN state SET DEFAULT 'pending',
    ALTER COLUMN priority SET NOT NULL,
    ALTER COLUMN attempts SET NOT NULL,
    ALTER COLUMN max_attempts SET NOT NULL,
    ALTER COLUMN max_attempts SET DEFAULT 1,
    ADD COLUMN IF NOT EXISTS claim_id uuid;

CREATE UNIQUE INDEX {prefix}jobs_unique_key ON {prefix}jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'retrying', 'running');

ALTER TABLE {prefix}queues
    ALTER COLUMN executor_options TYPE jsonb USING executor_options::jsonb,
    ADD COLUMN IF NOT EXISTS resume_at timestamptz,
    ADD COLUMN IF NOT EXISTS eager_polling boolean NOT NULL DEFAULT false;

UPDATE {prefix}queues
SET tags = coalesce(tags, ARRAY['.*']),
    executor_options = coalesce(executor_options, '{}'::jsonb),
    polling_interval = coalesce(polling_interval, 5)
WHERE tags IS NULL OR executor_options IS NULL OR polling_interval IS NULL;

-- Queues keep the concurrency they were declared with; only the column's default changes.
ALTER TABLE {prefix}queues
    ALTER COLUMN concurrency DROP DEFAULT,
    ALTER COLUMN tags SET NOT NULL,
    ALTER COLUMN tags SET DEFAULT ARRAY['.*'],
    ALTER COLUMN executor_options SET NOT NULL,
    ALTER COLUMN executor_options SET DEFAULT '{}'::jsonb,
    ALTER COLUMN polling_interval SET NOT NULL,
    ALTER COLUMN polling_interval SET DEFAULT 5;

UPDATE {prefix}workers
SET tags = coalesce(tags, '{}'), queues = coalesce(queues, '{}')
WHERE tags IS NULL OR queues IS NULL;

ALTER TABLE {prefix}workers
    ALTER COLUMN tags SET NOT NULL,
    ALTER COLUMN tags SET DEFAULT '{}',
    ALTER COLUMN queues SET NOT NULL,
    ALTER COLUMN queues SET DEFAULT '{}';

-- Chancy's leader table is replaced: its row is a lease that the old workers, stopped for the
-- upgrade, no longer renew, and the first chancy worker to start takes the lease anew.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = '{prefix}leader'::regclass AND attname = 'first_seen' AND NOT attisdropped
    ) THEN
        DROP TABLE {prefix}leader;
        CREATE UNLOGGED TABLE {prefix}leader (
            id integer PRIMARY KEY,
            worker_id text NOT NULL,
            last_seen timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
        );
    END IF;
END
$$;

-- Chancy made the version table with a varchar key and a nullable version.
ALTER TABLE {prefix}schema_version
    ALTER COLUMN version_of TYPE text,
    ALTER COLUMN version SET NOT NULL;

-- Then chancy's own additions: stored results, counted recoveries, leader terms, a small claim
-- index, fractional polling intervals and room for HOT updates on the hot jobs table.
ALTER TABLE {prefix}jobs
    ADD COLUMN result jsonb,
    ADD COLUMN recoveries integer NOT NULL DEFAULT 0;

ALTER TABLE {prefix}jobs SET (fillfactor = 80);

-- The claim reads waiting jobs of one queue in priority then id order; finished jobs, the
-- bulk of a busy table, are not in this index at all.
CREATE INDEX {prefix}jobs_claim ON {prefix}jobs (queue, priority DESC, id)
    WHERE state IN ('pending', 'retrying');

-- Recovery looks for running jobs by the worker that holds them.
CREATE INDEX {prefix}jobs_running ON {prefix}jobs (taken_by)
    WHERE state = 'running';

-- The pruner deletes finished jobs oldest first.
CREATE INDEX {prefix}jobs_finished ON {prefix}jobs (completed_at)
    WHERE state IN ('succeeded', 'failed');


ALTER TABLE {prefix}queues ALTER COLUMN polling_interval TYPE double precision;

ALTER TABLE {prefix}leader ADD COLUMN term bigint NOT NULL DEFAULT 0;

ALTER TABLE {prefix}workers
    ADD COLUMN started_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN hostname text,
    ADD COLUMN pid integer,
    ADD COLUMN version text;
