-- {prefix}push: push a job from SQL (psql, a PL/pgSQL function, a trigger) with the checks and
-- effects of Chancy.push, so that code that is not Python, or a write that must carry its job
-- in the same transaction, needs no worker-side code path of its own:
--
--     SELECT {prefix}push('default', 'app.jobs.send', '{"to": "x"}', priority => 5);
--
-- It checks what Job.validate checks and raises SQLSTATE 22023 (invalid_parameter_value)
-- with a HINT saying how to fix the call; stores the job as job_insert_many does (a live
-- unique key returns the existing job's id and leaves it untouched; a keyless job of a queue
-- with per-key limits gets the key ''); and sends queue.pushed on {prefix}events, which
-- PostgreSQL delivers only when the transaction commits.
--
-- Differences from Chancy.push, each on purpose:
-- * the queue must be declared (require_queue => false accepts an undeclared queue, as
--   Chancy.push does; the Trigger plugin uses it so that deleting a queue never makes the
--   user's own writes fail);
-- * plugins' on_push hooks do not run (they are Python);
-- * NOTIFY is sent even when the app runs with notifications=False (polling still works).
--
-- Ids are time-ordered UUIDs in the layout of chancy.utils.chancy_uuid: 48 bits of Unix
-- milliseconds (the server's clock_timestamp()), version 7, then 12 bits of sub-millisecond
-- time, the variant and 62 random bits, so they sort with ids made in Python by creation time
-- (to the millisecond; within one session, strictly in order).
--
-- Its tables are named with the schema this migration runs in (filled in below), so it works
-- whatever the search_path of the session that calls it (a trigger may fire in any session).
-- That costs nothing per call, unlike a SET search_path clause (about 40% of a push here).
DO $create$
BEGIN
EXECUTE replace($sql$
CREATE OR REPLACE FUNCTION @schema@.{prefix}push(
    queue text,
    func text,
    kwargs jsonb DEFAULT '{}',
    priority integer DEFAULT 0,
    scheduled_at timestamptz DEFAULT NULL,
    unique_key text DEFAULT NULL,
    partition_key text DEFAULT NULL,
    max_attempts integer DEFAULT 1,
    meta jsonb DEFAULT '{}',
    limits jsonb DEFAULT '[]',
    require_queue boolean DEFAULT true
) RETURNS uuid
LANGUAGE plpgsql
AS $push$
#variable_conflict use_column
DECLARE
    p_queue text := {prefix}push.queue;
    p_func text := {prefix}push.func;
    p_kwargs jsonb := coalesce({prefix}push.kwargs, '{}'::jsonb);
    p_meta jsonb := coalesce({prefix}push.meta, '{}'::jsonb);
    p_limits jsonb := coalesce({prefix}push.limits, '[]'::jsonb);
    p_key text := {prefix}push.unique_key;
    p_partition text := {prefix}push.partition_key;
    declared boolean := false;
    keyed boolean := false;
    ts timestamptz;
    stamp bigint;
    last_stamp bigint;
    raw bytea;
    new_id uuid;
    found_id uuid;
BEGIN
    IF p_queue IS NULL THEN
        RAISE EXCEPTION '{prefix}push: queue is NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the name of a declared queue as the first argument, e.g.'
                      || ' {prefix}push(''default'', ''app.jobs.send'').';
    END IF;
    IF p_queue !~ '^[A-Za-z0-9_.:-]{1,200}$' THEN
        RAISE EXCEPTION '{prefix}push: % is not a valid queue name', quote_literal(p_queue)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 1-200 letters, digits, ''_'', ''-'', ''.'' or '':''.';
    END IF;
    IF p_func IS NULL OR p_func !~ '^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$' THEN
        RAISE EXCEPTION '{prefix}push: func % is not an import path',
                coalesce(quote_literal(p_func), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the dotted path of the job function, e.g.'
                      || ' ''package.module.function'' (identifiers joined by dots).';
    END IF;
    IF jsonb_typeof(p_kwargs) <> 'object' THEN
        RAISE EXCEPTION '{prefix}push: kwargs must be a JSON object, got a JSON %',
                jsonb_typeof(p_kwargs)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the keyword arguments as an object, e.g. ''{"to": "a@b.c"}'''
                      || ' (or ''{}'' for none).';
    END IF;
    IF jsonb_typeof(p_meta) <> 'object' THEN
        RAISE EXCEPTION '{prefix}push: meta must be a JSON object, got a JSON %',
                jsonb_typeof(p_meta)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass meta as an object, e.g. ''{"source": "sql"}'' (or ''{}'').';
    END IF;
    IF {prefix}push.priority IS NULL THEN
        RAISE EXCEPTION '{prefix}push: priority is NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a 32-bit integer: higher numbers run first, 0 is normal.';
    END IF;
    IF {prefix}push.max_attempts IS NULL OR {prefix}push.max_attempts < 1 THEN
        RAISE EXCEPTION '{prefix}push: max_attempts must be at least 1, got %',
                coalesce({prefix}push.max_attempts::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'max_attempts counts tries: 1 is one try, 3 is one try and two retries.';
    END IF;
    IF p_key = '' THEN
        RAISE EXCEPTION '{prefix}push: unique_key is an empty string'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a non-empty key, or NULL for a job without one.';
    END IF;
    IF p_partition IS NOT NULL AND (p_partition = '' OR length(p_partition) > 500) THEN
        RAISE EXCEPTION '{prefix}push: partition_key must be 1-500 characters, got %',
                length(p_partition)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a short id such as a customer id, or NULL for no key.';
    END IF;
    IF p_limits <> '[]'::jsonb AND (jsonb_typeof(p_limits) <> 'array' OR EXISTS (
        SELECT 1 FROM jsonb_array_elements(p_limits) AS l(item)
        WHERE NOT CASE
            WHEN jsonb_typeof(l.item) = 'object' AND jsonb_typeof(l.item -> 'v') = 'number'
                THEN coalesce(l.item ->> 't', '') IN ('memory', 'time')
                     AND (l.item ->> 'v')::numeric > 0
            ELSE false
        END
    )) THEN
        RAISE EXCEPTION '{prefix}push: limits must be a JSON array of limits, got %', p_limits
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Each limit is {"t": "memory", "v": <bytes>} or'
                      || ' {"t": "time", "v": <seconds>}, with v > 0; pass ''[]'' for none.';
    END IF;

    SELECT true, (q.partition_concurrency IS NOT NULL OR q.partition_rate_limit IS NOT NULL)
    INTO declared, keyed
    FROM @schema@.{prefix}queues AS q
    WHERE q.name = p_queue;
    declared := coalesce(declared, false);
    keyed := coalesce(keyed, false);
    IF NOT declared AND coalesce({prefix}push.require_queue, true) THEN
        RAISE EXCEPTION '{prefix}push: queue % is not declared', quote_literal(p_queue)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Declare it first (await chancy.declare(Queue(%L)) or'
                      || ' `chancy queue declare %s`), or check the spelling. Unlike'
                      || ' Chancy.push, this function refuses undeclared queues unless called'
                      || ' with require_queue => false.', p_queue, p_queue);
    END IF;

    -- A few tries, as in the Python push: a live job holding the key may finish between the
    -- insert that skipped it and the look-up of its id.
    FOR attempt IN 1..10 LOOP
        -- Milliseconds and 1/4096ths of one; never at or below the session's previous id
        -- (as chancy_uuid's counter), so ids made in one session are strictly increasing.
        ts := clock_timestamp();
        stamp := floor(extract(epoch FROM ts) * 1000)::bigint * 4096
            + (extract(microseconds FROM ts)::bigint % 1000) * 4096 / 1000;
        last_stamp := nullif(current_setting('chancy.push_clock', true), '')::bigint;
        IF stamp <= last_stamp THEN
            stamp := last_stamp + 1;
        END IF;
        PERFORM set_config('chancy.push_clock', stamp::text, false);
        raw := uuid_send(gen_random_uuid());
        raw := overlay(raw PLACING substring(int8send(stamp >> 12) FROM 3 FOR 6) FROM 1 FOR 6);
        raw := set_byte(raw, 6, (112 | ((stamp >> 8) & 15))::integer);
        raw := set_byte(raw, 7, (stamp & 255)::integer);
        new_id := encode(raw, 'hex')::uuid;

        INSERT INTO @schema@.{prefix}jobs AS j
            (id, queue, func, kwargs, limits, meta, priority, max_attempts, scheduled_at,
             unique_key, partition_key)
        VALUES (
            new_id, p_queue, p_func, p_kwargs, p_limits, p_meta, {prefix}push.priority,
            {prefix}push.max_attempts, coalesce({prefix}push.scheduled_at, now()), p_key,
            coalesce(p_partition, CASE WHEN keyed THEN '' END)
        )
        ON CONFLICT (unique_key)
            WHERE unique_key IS NOT NULL AND state IN ('pending', 'retrying', 'running')
            DO NOTHING
        RETURNING j.id INTO found_id;
        IF found_id IS NOT NULL THEN
            PERFORM pg_notify(
                '{prefix}events', json_build_object('t', 'queue.pushed', 'q', p_queue)::text
            );
            RETURN found_id;
        END IF;
        SELECT j.id INTO found_id
        FROM @schema@.{prefix}jobs AS j
        WHERE j.unique_key = p_key AND j.state IN ('pending', 'retrying', 'running');
        IF found_id IS NOT NULL THEN
            RETURN found_id;
        END IF;
    END LOOP;
    RAISE EXCEPTION '{prefix}push: could not settle unique key % after 10 tries',
            quote_literal(p_key)
        USING ERRCODE = 'serialization_failure',
              HINT = 'Another session keeps finishing and pushing jobs with this key; retry.';
END
$push$
$sql$, '@schema@', quote_ident(current_schema()));
END
$create$;
