-- The end state of Chancy's core schema version 8 (tables and columns of API.md), created in
-- one step. Databases made by Chancy 0.26 are already at 8 and continue from 9. A database that
-- Chancy left at an earlier version (1 to 7: Chancy 0.20 to 0.25) already has these tables in
-- an older shape, so nothing here replaces one that exists; version 9 brings every table a
-- Chancy made, whatever its version, to the shape written here.
CREATE TABLE IF NOT EXISTS {prefix}jobs (
    id uuid PRIMARY KEY,
    queue text NOT NULL,
    func text NOT NULL,
    kwargs jsonb NOT NULL DEFAULT '{}'::jsonb,
    limits jsonb NOT NULL DEFAULT '[]'::jsonb,
    meta jsonb NOT NULL DEFAULT '{}'::jsonb,
    state text NOT NULL DEFAULT 'pending',
    priority integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 1,
    taken_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    completed_at timestamptz,
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    unique_key text,
    errors jsonb NOT NULL DEFAULT '[]'::jsonb,
    claim_id uuid
);

CREATE UNIQUE INDEX IF NOT EXISTS {prefix}jobs_unique_key ON {prefix}jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'retrying', 'running');

CREATE INDEX IF NOT EXISTS {prefix}idx_jobs_queue_state ON {prefix}jobs (queue, state);

CREATE TABLE IF NOT EXISTS {prefix}queues (
    name text PRIMARY KEY,
    state text NOT NULL DEFAULT 'active',
    concurrency integer,
    tags text[] NOT NULL DEFAULT ARRAY['.*'],
    executor text NOT NULL DEFAULT 'chancy.executors.process.ProcessExecutor',
    executor_options jsonb NOT NULL DEFAULT '{}'::jsonb,
    polling_interval integer NOT NULL DEFAULT 5,
    created_at timestamptz NOT NULL DEFAULT now(),
    rate_limit integer,
    rate_limit_window integer,
    resume_at timestamptz,
    eager_polling boolean NOT NULL DEFAULT false
);

CREATE UNLOGGED TABLE IF NOT EXISTS {prefix}workers (
    worker_id text PRIMARY KEY,
    tags text[] NOT NULL DEFAULT '{}',
    queues text[] NOT NULL DEFAULT '{}',
    last_seen timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE UNLOGGED TABLE IF NOT EXISTS {prefix}leader (
    id integer PRIMARY KEY,
    worker_id text NOT NULL,
    last_seen timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
