-- Recovery of jobs whose worker died. Leader-only: every statement is fenced by the leader's
-- lease (worker_id and term, current in the database, row share-locked so no election can
-- complete while the write is in flight); %(fenced)s is false only under ImmediateLeadership.

-- name: recovery_recover
-- One batch: running jobs whose worker has no live heartbeat row go back to pending with
-- their claim cleared (a zombie's late write then matches nothing), counted in recoveries but
-- not in attempts. A job interrupted more than max_recoveries times ends failed instead.
-- Failed ids are announced (job.finished) and each queue that got jobs back is woken.
WITH lost AS (
    SELECT j.id FROM {prefix}jobs AS j
    WHERE j.state = 'running'
      AND NOT EXISTS (
          -- A live heartbeat of the same incarnation: a row registered after the claim
          -- belongs to a process that reused the worker id and knows nothing of this job.
          SELECT 1 FROM {prefix}workers AS w
          WHERE w.worker_id = j.taken_by AND w.expires_at > now()
            AND w.started_at <= j.started_at
      )
      AND (NOT %(fenced)s OR EXISTS (
          SELECT 1 FROM {prefix}leader AS l
          WHERE l.id = 1 AND l.worker_id = %(leader)s AND l.term = %(term)s::bigint
            AND l.expires_at > now()
          FOR SHARE
      ))
    ORDER BY j.id
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
), recovered AS (
    UPDATE {prefix}jobs AS j
    SET state = CASE WHEN j.recoveries >= %(max_recoveries)s THEN 'failed' ELSE 'pending' END,
        recoveries = j.recoveries + 1,
        claim_id = NULL,
        taken_by = CASE WHEN j.recoveries >= %(max_recoveries)s THEN j.taken_by END,
        started_at = CASE WHEN j.recoveries >= %(max_recoveries)s THEN j.started_at END,
        completed_at = CASE WHEN j.recoveries >= %(max_recoveries)s THEN now() END,
        errors = CASE
            WHEN j.recoveries >= %(max_recoveries)s THEN j.errors || jsonb_build_array(
                jsonb_build_object(
                    'attempt', j.attempts,
                    'traceback', 'RecoveryLimitExceeded: the job was interrupted '
                        || (j.recoveries + 1)
                        || ' times by its worker dying (killed, crashed or lost its heartbeat);'
                        || ' giving up after max_recoveries=' || %(max_recoveries)s::int
                        || '. The job itself may be killing its worker (out of memory, a'
                        || ' crash in native code, os._exit): run it with the process'
                        || ' executor to isolate it, or raise Recovery(max_recoveries=...).'
                )
            )
            ELSE j.errors
        END
    FROM lost
    WHERE j.id = lost.id
    RETURNING j.id, j.queue, j.state
), finished AS (
    SELECT pg_notify('{prefix}events', json_build_object(
        't', 'job.finished', 'ids', array_agg(c.id))::text)
    FROM (
        SELECT id, (row_number() OVER () - 1) / 150 AS chunk
        FROM recovered WHERE state = 'failed'
    ) AS c
    WHERE %(notify)s
    GROUP BY c.chunk
), woken AS (
    SELECT pg_notify('{prefix}events', json_build_object('t', 'queue.pushed', 'q', q.queue)::text)
    FROM (SELECT DISTINCT queue FROM recovered WHERE state = 'pending') AS q
    WHERE %(notify)s
)
SELECT
    count(*) AS total,
    count(*) FILTER (WHERE state = 'pending') AS recovered,
    coalesce(array_agg(id) FILTER (WHERE state = 'failed'), '{}') AS failed_ids,
    (SELECT count(*) FROM finished) + (SELECT count(*) FROM woken) AS notified
FROM recovered;

-- name: recovery_forget_workers
-- Delete heartbeat rows that expired long ago (their jobs were recovered meanwhile; a worker
-- that comes back re-registers with its next heartbeat).
WITH forgotten AS (
    DELETE FROM {prefix}workers AS w
    WHERE w.expires_at < now() - make_interval(secs => %(after)s)
      AND (NOT %(fenced)s OR EXISTS (
          SELECT 1 FROM {prefix}leader AS l
          WHERE l.id = 1 AND l.worker_id = %(leader)s AND l.term = %(term)s::bigint
            AND l.expires_at > now()
          FOR SHARE
      ))
    RETURNING w.worker_id
)
SELECT count(*) AS forgotten FROM forgotten;
