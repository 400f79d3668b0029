-- Statements of chancy.testing and chancy.pytest_plugin (never run by workers).

-- name: testing_prefix_tables
-- Every table of this installation's prefix (the plugins' tables too), to drop after a test.
SELECT relname AS name FROM pg_class
WHERE relkind IN ('r', 'u', 'p') AND relname LIKE %(pattern)s;

-- name: testing_prefix_functions
-- Every function of this installation's prefix ({prefix}push and the Trigger plugin's), in
-- the form DROP FUNCTION takes.
SELECT p.oid::regprocedure::text AS signature FROM pg_proc AS p
WHERE p.proname LIKE %(pattern)s;

-- name: testing_drop_table
-- The table's name is filled in as an identifier by psycopg.sql.
DROP TABLE IF EXISTS {table} CASCADE;

-- name: testing_drop_function
-- The signature is the server's own rendering (testing_prefix_functions), quoted by it.
DROP FUNCTION IF EXISTS {signature} CASCADE;

-- name: testing_clock
-- The server's clock now (not the transaction's start), before a test worker starts: every job
-- it finishes gets a later completion time.
SELECT clock_timestamp() AS ts;

-- name: testing_finished_since
-- Jobs of the given queues (all when NULL) that finished at or after %(since)s, oldest first:
-- a range of the finished-jobs index (v0011), whatever the notifications delivered so far.
SELECT * FROM {prefix}jobs
WHERE state IN ('succeeded', 'failed')
  AND coalesce(completed_at, created_at) >= %(since)s
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
ORDER BY coalesce(completed_at, created_at), id;
