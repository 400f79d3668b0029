DO $unfair$
DECLARE
    fn regprocedure := to_regprocedure(
        quote_ident(current_schema()) || '.{prefix}push(text, text, jsonb, integer,'
        || ' timestamptz, text, text, integer, jsonb, jsonb, boolean)'
    );
    old_check text := 'SELECT true, (q.partition_concurrency IS NOT NULL OR q.partition_rate_limit IS NOT NULL)';
BEGIN
    IF fn IS NOT NULL THEN
        EXECUTE replace(pg_get_functiondef(fn), old_check || ' OR q.fairness OR q.partition_ordered', old_check);
    END IF;
END
$unfair$;

DROP TABLE IF EXISTS {prefix}fair_keys;
DROP INDEX IF EXISTS {prefix}jobs_key_order;
DROP INDEX IF EXISTS {prefix}jobs_failed_key;

ALTER TABLE {prefix}queues
    DROP COLUMN IF EXISTS fairness,
    DROP COLUMN IF EXISTS partition_weights,
    DROP COLUMN IF EXISTS partition_ordered,
    DROP COLUMN IF EXISTS partition_on_failure;
