-- claim_jobs (v0017, v0018) updates the rows it picked by their row versions (ctid, a TID
-- scan) instead of looking their ids up again in the primary key. The pick locks each row
-- (FOR UPDATE), and a locked row cannot move while the statement runs, so the version the
-- pick returns is the one to update; the primary key lookup cost every claimed job a descent
-- of the index on top of the visit to its row: 44.6 against 41.5 us per job for claims of 500
-- (median of 6 alternating drains of 20,000 jobs, client time). A TID scan is the only plan
-- for it besides reading the whole table, which the function's settings rule out, so the
-- statistics cannot change it (tests/store/test_plans.py). One difference, in a race only: a
-- row picked in a version newer than the statement's snapshot (changed and committed by
-- another session after the claim began, and still waiting) is not visible to the UPDATE, so
-- it stays locked until the claim commits and waits for the next claim, where the lookup by
-- id claimed it. The claims within limits do the same (the claim_picked fragment). The SET
-- clauses are v0017's and v0018's: CREATE OR REPLACE sets the function's settings anew.
CREATE OR REPLACE FUNCTION {prefix}claim_jobs(p_queue text, p_limit integer, p_worker_id text)
RETURNS SETOF {prefix}jobs
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $claim$
BEGIN
    RETURN QUERY
    WITH picked AS (
        SELECT ctid FROM {prefix}jobs
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
    WHERE j.ctid = ANY(ARRAY(SELECT ctid FROM picked))
    RETURNING j.*;
END
$claim$;
