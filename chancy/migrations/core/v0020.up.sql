-- The completion write as a function (job_complete_many in jobs.sql calls it), so it is one
-- statement in autocommit that still runs under its planner settings, like the claim
-- (v0017, v0018). The write joins the batch of outcomes to the rows it updates:
-- - with nested loops allowed, statistics that make both look like a handful of rows (a
--   table never analysed, or analysed before the jobs were pushed) joined them with a loop
--   that read the whole batch again for every row: a batch of 1,000 took 0.66 s;
-- - with sequential scans allowed, a plan made while the table was tiny (the first jobs of a
--   new installation) read the whole table, and kept as the statement's generic plan it
--   went on doing so once the table was big.
-- Before this the worker ran the nested-loop setting in a transaction of its own around the
-- write (BEGIN, the setting, the write, COMMIT) and the write was planned per run; here the
-- SET clauses hold for every plan the function makes and caches (tests/store/test_plans.py).
--
-- Write a batch of outcomes. Only rows still running under the claim that produced the
-- outcome change; a late write from a worker that lost the job matches nothing. NULL in
-- errors, meta or delay keeps the stored value. Finished ids are announced (job.finished),
-- in chunks that stay below NOTIFY's payload limit. p_progresses is NULL unless some of these
-- jobs made a progress report not written yet (chancy.runtime.progress): it is written in the
-- same row update, `at` in database time. Returns the ids written and how many notifications
-- were sent.
CREATE FUNCTION {prefix}complete_jobs(
    p_ids uuid[], p_claim_ids uuid[], p_states text[], p_attempts integer[],
    p_errors jsonb[], p_metas jsonb[], p_results jsonb[], p_delays float8[],
    p_progresses jsonb[], p_notify boolean
)
RETURNS TABLE (ids uuid[], notified bigint)
LANGUAGE plpgsql
SET enable_nestloop = off
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $complete$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH u AS (
        SELECT * FROM unnest(
            p_ids::uuid[], p_claim_ids::uuid[], p_states::text[], p_attempts::int[],
            p_errors::jsonb[], p_metas::jsonb[], p_results::jsonb[], p_delays::float8[],
            p_progresses::jsonb[]
        ) AS u(id, claim_id, state, attempts, errors, meta, result, delay, progress)
    ), done AS (
        UPDATE {prefix}jobs AS j
        SET state = u.state,
            attempts = u.attempts,
            errors = coalesce(u.errors, j.errors),
            meta = coalesce(u.meta, j.meta),
            result = u.result,
            progress = CASE
                WHEN u.progress IS NULL THEN j.progress
                ELSE u.progress || jsonb_build_object('at', now())
            END,
            completed_at = CASE WHEN u.state IN ('succeeded', 'failed') THEN now() END,
            scheduled_at = CASE
                WHEN u.delay IS NULL THEN j.scheduled_at
                ELSE now() + make_interval(secs => u.delay)
            END,
            claim_id = NULL
        FROM u
        WHERE j.id = ANY(ARRAY(SELECT u.id FROM u))
          AND j.id = u.id AND j.claim_id = u.claim_id AND (j.state = 'running') IS TRUE
        RETURNING j.id, j.state
    ), announced AS (
        SELECT pg_notify(
            '{prefix}events',
            json_build_object('t', 'job.finished', 'ids', array_agg(c.id))::text
        )
        FROM (
            SELECT d.id, (row_number() OVER () - 1) / 150 AS chunk
            FROM done AS d WHERE d.state IN ('succeeded', 'failed')
        ) AS c
        WHERE p_notify::boolean
        GROUP BY c.chunk
    )
    SELECT coalesce(array_agg(done.id), '{}'), (SELECT count(*) FROM announced)
    FROM done;
END
$complete$;
