-- Back to v0022's claim_jobs: a gen_random_uuid() per claimed row.
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
