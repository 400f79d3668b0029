-- Row-level triggers (with a WHEN condition, the row's columns in the job's kwargs and a
-- unique key made from them), and one trigger function that pushes through {prefix}push.
--
-- level: 'statement' (one job per statement, Chancy 0.26's only mode) or 'row' (one push per
-- changed row). condition: the SQL of the trigger's WHEN clause (row level only).
-- kwargs_columns: a JSON array of the columns copied from the row (OLD for DELETE, NEW
-- otherwise) into the job's kwargs. unique_key: the job's unique key, where '{column}' is
-- replaced by that column's value (row level); NULL keeps the job template's own key.
ALTER TABLE {prefix}triggers
    ADD COLUMN level text NOT NULL DEFAULT 'statement',
    ADD COLUMN condition text,
    ADD COLUMN kwargs_columns jsonb,
    ADD COLUMN unique_key text,
    ADD CONSTRAINT {prefix}triggers_level CHECK (level IN ('statement', 'row'));

-- The function every installed trigger runs, with the trigger's id as its one argument. It
-- reads the trigger's row by that id (so renaming the user's table, or a long table prefix
-- that truncates trigger names, changes nothing) and pushes one job. The push happens in the
-- user's transaction: the job exists only if the write commits, and its NOTIFY is delivered
-- on commit. No exception block here: each would open a subtransaction per fired row. Its
-- tables are named with the schema this migration runs in (filled in below, as in {prefix}push),
-- so it works whatever the search_path of the writing session, at no cost per row.
DO $create$
BEGIN
EXECUTE replace($sql$
CREATE OR REPLACE FUNCTION @schema@.{prefix}trigger_fire() RETURNS trigger
LANGUAGE plpgsql
AS $fire$
DECLARE
    t record;
    tpl jsonb;
    row_data jsonb;
    args jsonb;
    key text;
    rest text;
    open_at integer;
    close_at integer;
    value text;
    col text;
BEGIN
    -- One query per fired row; the columns come as an array so that copying them below is
    -- plain PL/pgSQL (no further query per row).
    SELECT tr.id, tr.enabled, tr.job_template, tr.unique_key,
           ARRAY(SELECT jsonb_array_elements_text(tr.kwargs_columns)) AS columns
    INTO t
    FROM @schema@.{prefix}triggers AS tr
    WHERE tr.id = TG_ARGV[0]::uuid;
    -- Disabling or removing a trigger drops it; this only covers a row edited by hand.
    IF NOT FOUND OR NOT t.enabled THEN
        RETURN NULL;
    END IF;
    tpl := t.job_template;
    args := coalesce(tpl -> 'k', '{}'::jsonb);
    key := tpl ->> 'u';
    IF TG_LEVEL = 'ROW' THEN
        IF TG_OP = 'DELETE' THEN
            row_data := to_jsonb(OLD);
        ELSE
            row_data := to_jsonb(NEW);
        END IF;
        FOREACH col IN ARRAY t.columns LOOP
            args := args || jsonb_build_object(col, row_data -> col);
        END LOOP;
        IF t.unique_key IS NOT NULL THEN
            -- Fill '{column}' placeholders left to right (a value that looks like a
            -- placeholder is never filled again). A NULL column gives no key at all: rows
            -- whose key column is NULL must not share one job.
            key := '';
            rest := t.unique_key;
            LOOP
                open_at := strpos(rest, '{');
                EXIT WHEN open_at = 0;
                close_at := strpos(substr(rest, open_at + 1), '}');
                EXIT WHEN close_at = 0;
                value := row_data ->> substr(rest, open_at + 1, close_at - 1);
                IF value IS NULL THEN
                    key := NULL;
                    EXIT;
                END IF;
                key := key || substr(rest, 1, open_at - 1) || value;
                rest := substr(rest, open_at + close_at + 1);
            END LOOP;
            key := nullif(key || rest, '');
        END IF;
    ELSIF t.unique_key IS NOT NULL THEN
        key := t.unique_key;
    END IF;
    -- require_queue => false: a queue deleted after the trigger was registered must not make
    -- the user's writes fail; its jobs wait until the queue is declared again, as jobs pushed
    -- from Python would.
    PERFORM @schema@.{prefix}push(
        queue => tpl ->> 'q',
        func => tpl ->> 'f',
        kwargs => args,
        priority => coalesce((tpl ->> 'p')::integer, 0),
        unique_key => key,
        partition_key => tpl ->> 'pk',
        max_attempts => coalesce((tpl ->> 'a')::integer, 1),
        meta => coalesce(tpl -> 'm', '{}'::jsonb) || jsonb_build_object(
            'trigger', jsonb_build_object(
                'operation', TG_OP,
                'timestamp', now(),
                'table_name', TG_TABLE_NAME,
                'schema_name', TG_TABLE_SCHEMA,
                'trigger_name', TG_NAME,
                'trigger_id', t.id
            )
        ),
        limits => coalesce(tpl -> 'l', '[]'::jsonb),
        require_queue => false
    );
    RETURN NULL;
END
$fire$
$sql$, '@schema@', quote_ident(current_schema()));
END
$create$;

-- Drop the database triggers of one registered trigger: those running {prefix}trigger_fire
-- with its id as argument, on whatever table they are now (a renamed table keeps them).
-- Returns how many were dropped.
CREATE OR REPLACE FUNCTION {prefix}trigger_uninstall(trigger_id uuid) RETURNS integer
LANGUAGE plpgsql
AS $uninstall$
DECLARE
    tg_row record;
    dropped integer := 0;
BEGIN
    FOR tg_row IN
        SELECT tg.tgname, tg.tgrelid::regclass AS rel
        FROM pg_trigger AS tg
        WHERE tg.tgfoid = '{prefix}trigger_fire()'::regprocedure
          AND tg.tgargs = convert_to(trigger_id::text, 'UTF8') || '\x00'::bytea
          -- Not the copies PostgreSQL keeps on the partitions of a partitioned table: they go
          -- with the parent's trigger.
          AND tg.tgparentid = 0
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', tg_row.tgname, tg_row.rel);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$uninstall$;

-- Create the database triggers of one registered trigger (one per operation, AFTER, FOR EACH
-- ROW or STATEMENT, with its WHEN condition), replacing any it already has. Fails with a
-- clear error, leaving nothing behind in the caller's (sub)transaction, when the table is
-- missing or the condition is not valid SQL for an operation. Returns how many were made.
CREATE OR REPLACE FUNCTION {prefix}trigger_install(trigger_id uuid) RETURNS integer
LANGUAGE plpgsql
AS $install$
DECLARE
    t record;
    rel regclass;
    op text;
    trg_name text;
    made oid;
    n integer := 0;
BEGIN
    SELECT * INTO t FROM {prefix}triggers AS tr WHERE tr.id = trigger_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'trigger % not found', trigger_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'List the registered triggers with `chancy trigger list`.';
    END IF;
    rel := to_regclass(format('%I.%I', t.schema_name, t.table_name));
    IF rel IS NULL THEN
        RAISE EXCEPTION 'there is no table %.%', quote_ident(t.schema_name),
                quote_ident(t.table_name)
            USING ERRCODE = 'undefined_table',
                  HINT = 'Check table_name and schema_name (schema_name defaults to'
                      || ' ''public''), or remove this trigger if its table was dropped.';
    END IF;
    IF to_regprocedure('{prefix}push(text, text, jsonb, integer, timestamptz, text, text,'
            || ' integer, jsonb, jsonb, boolean)') IS NULL THEN
        RAISE EXCEPTION 'the function {prefix}push does not exist'
            USING ERRCODE = 'undefined_function',
                  HINT = 'Migrate the chancy schema to its head version first'
                      || ' (await chancy.migrate() or `chancy misc migrate`).';
    END IF;
    PERFORM {prefix}trigger_uninstall(t.id);
    FOR op IN SELECT upper(o) FROM jsonb_array_elements_text(t.operations) AS ops(o) LOOP
        trg_name := t.trigger_name || '_' || lower(op);
        BEGIN
            EXECUTE format(
                'CREATE TRIGGER %I AFTER %s ON %s FOR EACH %s%s EXECUTE FUNCTION %s(%L)',
                trg_name,
                op,
                rel,
                upper(t.level),
                CASE WHEN t.condition IS NULL THEN ''
                     ELSE format(E' WHEN (%s\n)', t.condition) END,
                '{prefix}trigger_fire'::regproc,
                t.id
            );
        EXCEPTION WHEN OTHERS THEN
            IF t.condition IS NULL THEN
                RAISE;
            END IF;
            RAISE EXCEPTION 'the WHEN condition % cannot be used for % on %: %',
                    quote_literal(t.condition), op, rel, SQLERRM
                USING ERRCODE = SQLSTATE,
                      HINT = 'The condition is an SQL boolean expression over the changed row:'
                          || ' NEW for INSERT and UPDATE, OLD for UPDATE and DELETE (e.g.'
                          || ' NEW.email IS DISTINCT FROM OLD.email). INSERT has no OLD and'
                          || ' DELETE has no NEW: register one trigger per operation if the'
                          || ' condition needs them.';
        END;
        -- The condition is checked in Python to stay inside WHEN ( ... ); this makes sure the
        -- trigger made is the one asked for, whatever the text held.
        SELECT tg.tgfoid INTO made
        FROM pg_trigger AS tg
        WHERE tg.tgrelid = rel AND tg.tgname = trg_name;
        IF made IS DISTINCT FROM '{prefix}trigger_fire()'::regprocedure::oid THEN
            RAISE EXCEPTION 'the trigger % on % does not run {prefix}trigger_fire', trg_name, rel
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'The WHEN condition must be one boolean expression.';
        END IF;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$install$;

-- These two find the chancy tables in the schema this migration ran in, whatever the
-- search_path of the session that registers a trigger (they are not on the write path).
DO $pin$
BEGIN
    EXECUTE format('ALTER FUNCTION {prefix}trigger_install(uuid) SET search_path = %I, pg_temp',
        current_schema());
    EXECUTE format(
        'ALTER FUNCTION {prefix}trigger_uninstall(uuid) SET search_path = %I, pg_temp',
        current_schema());
END
$pin$;

-- Upgrade the triggers a Chancy 0.26 database has installed, in place: drop them (with the
-- function they run) and install each enabled trigger again on {prefix}trigger_fire. A
-- trigger whose table is gone is disabled, with a warning, instead of failing the migration.
DROP FUNCTION IF EXISTS {prefix}trigger_handler() CASCADE;

DO $upgrade$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT id, schema_name, table_name FROM {prefix}triggers
        WHERE enabled
        ORDER BY created_at, id
    LOOP
        BEGIN
            PERFORM {prefix}trigger_install(t.id);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'trigger % on %.% could not be installed again and is now disabled: %',
                t.id, t.schema_name, t.table_name, SQLERRM;
            UPDATE {prefix}triggers SET enabled = false WHERE id = t.id;
        END;
    END LOOP;
END
$upgrade$;
