DO $claim$
DECLARE
    fn regprocedure := to_regprocedure('{prefix}claim_jobs(text, integer, text)');
BEGIN
    IF fn IS NOT NULL THEN
        EXECUTE replace(
            pg_get_functiondef(fn),
            'ELSE (SELECT gen_random_uuid()) END',
            'ELSE gen_random_uuid() END'
        );
    END IF;
END
$claim$;
