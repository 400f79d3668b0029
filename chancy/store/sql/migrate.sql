-- name: migrate_lock
-- One migration at a time per installation: concurrent migrate() calls queue up here and
-- then find the work done.
SELECT pg_advisory_xact_lock(hashtextextended('chancy-migrate:{prefix}', 0));

-- name: schema_version_create
CREATE TABLE IF NOT EXISTS {prefix}schema_version (
    version_of text PRIMARY KEY,
    version integer NOT NULL
);

-- name: schema_version_exists
SELECT to_regclass(%(table)s) IS NOT NULL AS exists;

-- name: schema_version_all
SELECT version_of, version FROM {prefix}schema_version;

-- name: schema_version_set
INSERT INTO {prefix}schema_version (version_of, version)
VALUES (%(key)s, %(version)s)
ON CONFLICT (version_of) DO UPDATE SET version = EXCLUDED.version;

-- name: schema_version_delete
DELETE FROM {prefix}schema_version WHERE version_of = %(key)s;

-- name: schema_version_drop_if_empty
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {prefix}schema_version) THEN
        DROP TABLE {prefix}schema_version;
    END IF;
END
$$;
