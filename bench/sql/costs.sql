-- Named queries of bench/costs.py, the per-job server cost measurement (see bench/costs.py).
-- The measuring sessions run these with pg_stat_statements tracking turned off (costs_untracked),
-- so only chancy's statements are counted.

-- name: costs_preloaded
-- Whether pg_stat_statements is loaded at server start (it cannot be loaded any other way).
SELECT 'pg_stat_statements' = ANY(
    string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')
) AS preloaded;

-- name: costs_extension
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

-- name: costs_untracked
-- The measuring session's own statements stay out of pg_stat_statements (superuser setting).
SET pg_stat_statements.track = 'none';

-- name: costs_statements_reset
SELECT pg_stat_statements_reset();

-- name: costs_statements
-- Every statement of this database so far: time executing and planning (ms), WAL written.
SELECT queryid, query, calls, total_exec_time, total_plan_time, rows, wal_bytes, wal_records,
       wal_fpi
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database());

-- name: costs_wal_lsn
SELECT pg_current_wal_insert_lsn()::text AS lsn;

-- name: costs_wal_diff
SELECT pg_wal_lsn_diff(%(after)s::pg_lsn, %(before)s::pg_lsn)::bigint AS bytes;

-- name: costs_processes
-- Every server process with what it is: a client's application_name, else its backend type.
SELECT pid, coalesce(nullif(application_name, ''), backend_type) AS what
FROM pg_stat_activity;

-- name: costs_connections
-- Connections open under each application name (a worker's, the pusher's).
SELECT application_name AS name, count(*) AS n
FROM pg_stat_activity
WHERE application_name = ANY(%(names)s)
GROUP BY application_name;

-- name: costs_backend_pid
SELECT pg_backend_pid() AS pid;

-- name: costs_checkpoint
-- Every path starts right after a checkpoint (throwaway cluster only), so full-page images
-- are written in the same places for each.
CHECKPOINT;

-- name: costs_settings
SELECT version() AS version,
       current_setting('shared_buffers') AS shared_buffers,
       current_setting('synchronous_commit') AS synchronous_commit,
       current_setting('full_page_writes') AS full_page_writes,
       current_setting('wal_level') AS wal_level,
       current_setting('max_connections') AS max_connections,
       current_setting('autovacuum') AS autovacuum;

-- name: costs_jobs_done
-- Jobs finished so far (the drain's end); a small table, so a scan is cheap enough.
SELECT count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE state = 'failed') AS failed
FROM {prefix}jobs;

-- name: costs_workflows_open
-- Workflows the leader has not yet marked finished.
SELECT count(*) AS n FROM {prefix}workflows WHERE state IN ('pending', 'running');

-- name: costs_table_stats
-- Row versions written to the jobs table (read once the worker's backends have exited, which
-- flushes their counters): dead tuples per job for autovacuum, and how many updates were HOT.
SELECT n_tup_ins AS inserted, n_tup_upd AS updated, n_tup_hot_upd AS hot_updated,
       n_tup_del AS deleted
FROM pg_stat_user_tables WHERE relid = '{prefix}jobs'::regclass;
