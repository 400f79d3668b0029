-- Triggers of the Trigger plugin push through {prefix}push: dropping it under them would make
-- every write to their tables fail. Refuse instead, and say how to get there.
DO $guard$
DECLARE
    fire regprocedure := to_regprocedure('{prefix}trigger_fire()');
    n integer;
BEGIN
    IF fire IS NOT NULL THEN
        SELECT count(*) INTO n FROM pg_trigger WHERE tgfoid = fire;
        IF n > 0 THEN
            RAISE EXCEPTION 'cannot migrate chancy below version 12: % database trigger(s) of the Trigger plugin push jobs through {prefix}push', n
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Migrate the trigger line down first (add Trigger() to the app''s'
                          || ' plugins: chancy.migrate(to_version=0) removes it before the core'
                          || ' line), or disable or remove those triggers.';
        END IF;
    END IF;
END
$guard$;

DROP FUNCTION IF EXISTS {prefix}push(
    text, text, jsonb, integer, timestamptz, text, text, integer, jsonb, jsonb, boolean
);
