-- Back to the state Chancy 0.26 expects. Every trigger installed by version 2 goes first
-- (dropping their function drops them), so none is left calling a function that no longer
-- exists. Row-level triggers have no form in 0.26 and are removed (with a warning); the
-- enabled statement-level ones are installed again on {prefix}trigger_handler, the function
-- and the trigger names 0.26 uses.
DROP FUNCTION IF EXISTS {prefix}trigger_fire() CASCADE;
DROP FUNCTION IF EXISTS {prefix}trigger_install(uuid);
DROP FUNCTION IF EXISTS {prefix}trigger_uninstall(uuid);

DO $rows$
DECLARE
    t record;
BEGIN
    FOR t IN DELETE FROM {prefix}triggers WHERE level = 'row' RETURNING id, schema_name, table_name
    LOOP
        RAISE WARNING 'row-level trigger % on %.% is removed: Chancy 0.26 has no row-level triggers',
            t.id, t.schema_name, t.table_name;
    END LOOP;
END
$rows$;

-- 0.26 reads the template's scheduled_at ("s") as a number.
UPDATE {prefix}triggers
SET job_template = jsonb_set(job_template, '{s}', to_jsonb(extract(epoch FROM created_at)))
WHERE jsonb_typeof(job_template -> 's') IS DISTINCT FROM 'number';

ALTER TABLE {prefix}triggers
    DROP CONSTRAINT IF EXISTS {prefix}triggers_level,
    DROP COLUMN IF EXISTS level,
    DROP COLUMN IF EXISTS condition,
    DROP COLUMN IF EXISTS kwargs_columns,
    DROP COLUMN IF EXISTS unique_key;

-- Statement-level: finds its trigger by table and name (the base name plus '_insert',
-- '_update' or '_delete'), and inserts one job from the template.
CREATE OR REPLACE FUNCTION {prefix}trigger_handler() RETURNS trigger
LANGUAGE plpgsql
AS $handler$
DECLARE
    tpl jsonb;
BEGIN
    SELECT tr.job_template INTO tpl
    FROM {prefix}triggers AS tr
    WHERE tr.schema_name = TG_TABLE_SCHEMA
      AND tr.table_name = TG_TABLE_NAME
      AND tr.trigger_name || '_' || lower(TG_OP) = TG_NAME
      AND tr.enabled
      AND tr.operations ? TG_OP;
    IF tpl IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO {prefix}jobs
        (id, queue, func, kwargs, priority, max_attempts, limits, unique_key, meta)
    VALUES (
        gen_random_uuid(),
        tpl ->> 'q',
        tpl ->> 'f',
        coalesce(tpl -> 'k', '{}'::jsonb),
        coalesce((tpl ->> 'p')::integer, 0),
        coalesce((tpl ->> 'a')::integer, 1),
        coalesce(tpl -> 'l', '[]'::jsonb),
        tpl ->> 'u',
        coalesce(tpl -> 'm', '{}'::jsonb) || jsonb_build_object('trigger', jsonb_build_object(
            'operation', TG_OP,
            'timestamp', now(),
            'table_name', TG_TABLE_NAME,
            'schema_name', TG_TABLE_SCHEMA,
            'trigger_name', TG_NAME
        ))
    )
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND state IN ('pending', 'retrying', 'running')
        DO NOTHING;
    PERFORM pg_notify(
        '{prefix}events', json_build_object('t', 'queue.pushed', 'q', tpl ->> 'q')::text
    );
    RETURN NULL;
END
$handler$;

DO $reinstall$
DECLARE
    t record;
    op text;
    rel regclass;
BEGIN
    FOR t IN SELECT * FROM {prefix}triggers WHERE enabled ORDER BY created_at, id LOOP
        rel := to_regclass(format('%I.%I', t.schema_name, t.table_name));
        IF rel IS NULL THEN
            RAISE WARNING 'trigger % is disabled: there is no table %.%',
                t.id, t.schema_name, t.table_name;
            UPDATE {prefix}triggers SET enabled = false WHERE id = t.id;
            CONTINUE;
        END IF;
        FOR op IN SELECT upper(o) FROM jsonb_array_elements_text(t.operations) AS ops(o) LOOP
            EXECUTE format(
                'CREATE TRIGGER %I AFTER %s ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s()',
                t.trigger_name || '_' || lower(op), op, rel, '{prefix}trigger_handler'::regproc
            );
        END LOOP;
    END LOOP;
END
$reinstall$;
