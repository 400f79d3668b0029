-- The end state of Chancy's cron line at version 3, in one step. One row per schedule, keyed
-- by the unique key of its job; next_run is the next fire time (UTC instant), computed from
-- the expression in its time zone. A table that Chancy made at its version 1 or 2 (Chancy 0.20
-- to 0.25) is kept and brought to version 3: its job in jsonb (version 2), a time zone (version
-- 3, UTC for existing schedules as Chancy evaluated them); version 4 adds the queue column.
CREATE TABLE IF NOT EXISTS {prefix}cron (
    unique_key text PRIMARY KEY,
    queue text NOT NULL,
    job jsonb NOT NULL,
    cron text NOT NULL,
    last_run timestamptz,
    next_run timestamptz NOT NULL,
    timezone text NOT NULL DEFAULT 'Etc/UTC'
);

CREATE INDEX IF NOT EXISTS {prefix}cron_next_run_idx ON {prefix}cron (next_run);

ALTER TABLE {prefix}cron
    ALTER COLUMN job TYPE jsonb USING job::jsonb,
    ADD COLUMN IF NOT EXISTS timezone text NOT NULL DEFAULT 'Etc/UTC';
