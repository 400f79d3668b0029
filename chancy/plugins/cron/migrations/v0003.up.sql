-- The end state of Chancy's cron line at version 3, in one step. One row per schedule, keyed
-- by the unique key of its job; next_run is the next fire time (UTC instant), computed from
-- the expression in its time zone.
CREATE TABLE {prefix}cron (
    unique_key text PRIMARY KEY,
    queue text NOT NULL,
    job jsonb NOT NULL,
    cron text NOT NULL,
    last_run timestamptz,
    next_run timestamptz NOT NULL,
    timezone text NOT NULL DEFAULT 'Etc/UTC'
);

CREATE INDEX {prefix}cron_next_run_idx ON {prefix}cron (next_run);
