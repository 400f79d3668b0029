-- The Trigger plugin ({prefix}triggers). Database triggers are created and dropped by the
-- functions {prefix}trigger_install and {prefix}trigger_uninstall (migration v0002), which
-- build the DDL with format() and quoted identifiers; these queries only call them.

-- name: trigger_table_info
-- The table a trigger is registered on: its kind, its columns and its primary key columns
-- (in key order). No row when there is no such table.
SELECT c.oid::regclass::text AS name,
       c.relkind::text AS kind,
       array(
           SELECT a.attname::text FROM pg_attribute AS a
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum
       ) AS columns,
       array(
           SELECT a.attname::text
           FROM pg_index AS i
           JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
           WHERE i.indrelid = c.oid AND i.indisprimary
           ORDER BY array_position(i.indkey::int2[], a.attnum)
       ) AS primary_key
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s;

-- name: trigger_queue_declared
SELECT EXISTS (SELECT 1 FROM {prefix}queues WHERE name = %(queue)s) AS declared;

-- name: trigger_insert
INSERT INTO {prefix}triggers
    (id, table_name, schema_name, trigger_name, operations, job_template, enabled, level,
     condition, kwargs_columns, unique_key)
VALUES
    (%(id)s, %(table_name)s, %(schema_name)s, %(trigger_name)s, %(operations)s::jsonb,
     %(job_template)s::jsonb, %(enabled)s, %(level)s, %(condition)s, %(kwargs_columns)s::jsonb,
     %(unique_key)s);

-- name: trigger_install
SELECT {prefix}trigger_install(%(id)s) AS installed;

-- name: trigger_uninstall
SELECT {prefix}trigger_uninstall(%(id)s) AS removed;

-- name: trigger_lock
-- One trigger, locked until the end of the transaction that enables, disables or removes it.
SELECT id, enabled FROM {prefix}triggers WHERE id = %(id)s FOR UPDATE;

-- name: trigger_set_enabled
UPDATE {prefix}triggers SET enabled = %(enabled)s WHERE id = %(id)s;

-- name: trigger_delete
DELETE FROM {prefix}triggers WHERE id = %(id)s;

-- name: trigger_get
-- Registered triggers, newest first (as Chancy 0.26 lists them); all when ids is NULL.
SELECT id, table_name, schema_name, trigger_name, operations, job_template, enabled,
       created_at, level, condition, kwargs_columns, unique_key
FROM {prefix}triggers
WHERE %(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[])
ORDER BY created_at DESC, id DESC;
