-- Statements of chancy.testing and chancy.pytest_plugin (never run by workers).

-- name: testing_prefix_tables
-- Every table of this installation's prefix (the plugins' tables too), to drop after a test.
SELECT relname AS name FROM pg_class
WHERE relkind IN ('r', 'u', 'p') AND relname LIKE %(pattern)s;
