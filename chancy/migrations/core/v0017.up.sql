-- The unlimited claim as a function, so it is one statement in autocommit that still runs
-- under its planner setting. The claim reads a queue's waiting jobs in claim order from its
-- index and stops at the LIMIT. On a big table that was never analysed the planner falls
-- back to default selectivities, believes the backlog holds a handful of rows and prefers to
-- fetch all of them with a bitmap scan and sort them: the SET clause takes that plan away
-- while the function runs, whatever the statistics say (tests/store/test_plans.py), and
-- leaves the ordered index scan. Before this the claim ran that setting in a transaction of
-- its own: four statements (BEGIN, the setting, the claim, COMMIT) where this is one.
--
-- Claim up to p_limit waiting jobs of one queue, highest priority first and oldest first
-- within a priority, skipping rows other claimers hold. Each claimed row gets a fresh
-- claim_id: every later write about the job must carry it (fencing). A paused queue yields
-- nothing, whatever the worker believes: a pause is effective when pause_queue() returns.
-- A picked job whose deadline has passed is not started: it ends failed here, with an error
-- and meta.expired, and comes back with the others (state 'failed') to be told apart (the
-- SET list is the claim_or_expire fragment's, which the limited claims use).
-- The picked rows are looked up by primary key whatever the statistics say: with stale
-- statistics (right after a bulk push or a vacuum of an emptied table) a join was planned as
-- a full scan of the table.
CREATE FUNCTION {prefix}claim_jobs(p_queue text, p_limit integer, p_worker_id text)
RETURNS SETOF {prefix}jobs
LANGUAGE plpgsql
SET enable_bitmapscan = off
AS $claim$
BEGIN
    RETURN QUERY
    WITH picked AS (
        SELECT id FROM {prefix}jobs
        WHERE queue = p_queue
          AND state IN ('pending', 'retrying')
          AND scheduled_at <= now()
          AND attempts < max_attempts
          AND NOT EXISTS (
              SELECT 1 FROM {prefix}queues AS q WHERE q.name = p_queue AND q.state = 'paused'
          )
        ORDER BY priority DESC, id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE {prefix}jobs AS j
    SET state = CASE WHEN (j.deadline <= now()) IS TRUE THEN 'failed' ELSE 'running' END,
        started_at = CASE WHEN (j.deadline <= now()) IS TRUE THEN j.started_at ELSE now() END,
        taken_by = CASE WHEN (j.deadline <= now()) IS TRUE THEN j.taken_by ELSE p_worker_id END,
        claim_id = CASE WHEN (j.deadline <= now()) IS TRUE THEN NULL ELSE gen_random_uuid() END,
        completed_at = CASE WHEN (j.deadline <= now()) IS TRUE THEN now() ELSE j.completed_at END,
        errors = CASE WHEN (j.deadline <= now()) IS TRUE THEN j.errors || jsonb_build_array(
            jsonb_build_object(
                'attempt', j.attempts,
                'traceback', 'Expired: the job had not started by its deadline ('
                    || to_char(j.deadline AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                    || '), so it was not run.'
            )) ELSE j.errors END,
        meta = CASE WHEN (j.deadline <= now()) IS TRUE
            THEN j.meta || '{"expired": true}'::jsonb ELSE j.meta END
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING j.*;
END
$claim$;
