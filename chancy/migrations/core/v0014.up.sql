-- Weighted fair share across partition keys (Queue(fairness=True, partition_weights=...)) and
-- strict order per key (Queue(partition_ordered=True, partition_on_failure=...)).
-- A fair or ordered queue stores keyless jobs with the key '' as a queue with per-key limits
-- does, so the claim finds every key through jobs_claim_key; fair_keys holds each key's pass
-- (the stride scheduler's virtual time: +1/weight per job served), one row per key that had
-- waiting work at the queue's last claim.
ALTER TABLE {prefix}queues
    ADD COLUMN fairness boolean NOT NULL DEFAULT false,
    ADD COLUMN partition_weights jsonb,
    ADD COLUMN partition_ordered boolean NOT NULL DEFAULT false,
    ADD COLUMN partition_on_failure text NOT NULL DEFAULT 'continue';

-- An ordered key's next job is its oldest waiting one, whatever its priority: found by one
-- descent of this index. Keyless jobs (NULL) stay out of it, as they do of jobs_claim_key.
CREATE INDEX {prefix}jobs_key_order ON {prefix}jobs (queue, partition_key, id)
    WHERE state IN ('pending', 'retrying') AND partition_key IS NOT NULL;
-- An ordered queue that holds a key after a final failure looks for its failed jobs.
CREATE INDEX {prefix}jobs_failed_key ON {prefix}jobs (queue, partition_key)
    WHERE state = 'failed' AND partition_key IS NOT NULL;

CREATE TABLE {prefix}fair_keys (
    queue text NOT NULL,
    partition_key text NOT NULL,
    pass double precision NOT NULL,
    PRIMARY KEY (queue, partition_key)
);

-- {prefix}push (version 12) stores a keyless job with the key '' on a queue with per-key
-- limits; a fair or ordered queue needs the same. The function is rewritten from its own
-- stored text rather than repeated here, and the step refuses to go on if the text is not the
-- expected one.
DO $fair$
DECLARE
    fn regprocedure := to_regprocedure(
        quote_ident(current_schema()) || '.{prefix}push(text, text, jsonb, integer,'
        || ' timestamptz, text, text, integer, jsonb, jsonb, boolean)'
    );
    old_check text := 'SELECT true, (q.partition_concurrency IS NOT NULL OR q.partition_rate_limit IS NOT NULL)';
    body text;
BEGIN
    IF fn IS NULL THEN
        RAISE EXCEPTION 'chancy migration 14: {prefix}push is missing from schema %',
            current_schema()
            USING HINT = 'Run the migrations in the schema that holds chancy''s tables.';
    END IF;
    body := pg_get_functiondef(fn);
    IF position(old_check IN body) = 0 THEN
        RAISE EXCEPTION 'chancy migration 14: {prefix}push was changed outside chancy'
            USING HINT = 'Restore it by migrating the core line to 11 and back to 12.';
    END IF;
    EXECUTE replace(body, old_check, old_check || ' OR q.fairness OR q.partition_ordered');
END
$fair$;
