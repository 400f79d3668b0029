-- Recovery of jobs whose worker died. Leader-only: every statement is fenced by the leader's
-- lease (worker_id and term, current in the database, row share-locked so no election can
-- complete while the write is in flight); %(fenced)s is false only under ImmediateLeadership.

-- name: recovery_recover
-- plan: per run
-- One batch: running jobs whose worker has no live heartbeat row go back to pending with
-- their claim cleared (a zombie's late write then matches nothing), counted in recoveries but
-- not in attempts. A job interrupted more than max_recoveries times ends failed instead.
-- Failed ids are announced (job.finished) and each queue that got jobs back is woken.
WITH RECURSIVE holders AS (
    -- The workers that hold running jobs: a skip-scan over jobs_running (one index descent
    -- per worker, however many jobs each holds), so the pass never walks the whole index and
    -- also finds a holder that has no heartbeat row at all.
    (
        SELECT j.taken_by AS w FROM {prefix}jobs AS j
        WHERE j.state = 'running' AND j.taken_by > ''
        ORDER BY j.taken_by
        LIMIT 1
    )
    UNION ALL
    SELECT (
        SELECT j.taken_by FROM {prefix}jobs AS j
        WHERE j.state = 'running' AND j.taken_by > h.w
        ORDER BY j.taken_by
        LIMIT 1
    )
    FROM holders AS h
    WHERE h.w IS NOT NULL
), lost AS (
    SELECT j.id FROM {prefix}jobs AS j
    WHERE j.taken_by = ANY(ARRAY(SELECT h.w FROM holders AS h WHERE h.w IS NOT NULL))
      AND j.state = 'running'
      AND NOT EXISTS (
          -- A live heartbeat of the same incarnation: a row registered after the claim
          -- belongs to a process that reused the worker id and knows nothing of this job.
          SELECT 1 FROM {prefix}workers AS w
          WHERE w.worker_id = j.taken_by AND w.expires_at > now()
            AND w.started_at <= j.started_at
            -- Its session ended over the grace period ago and its liveness lock is still
            -- free (checked now, and held until this statement ends): dead, whatever its
            -- heartbeat says.
            AND NOT (w.lost_at IS NOT NULL
                     AND w.lost_at <= now() - make_interval(secs => %(grace)s::float8)
                     AND pg_try_advisory_xact_lock(w.liveness_key))
      )
      AND {leader_fence}
    -- No ORDER BY: walking the primary key in order to honour it could read the whole
    -- table; SKIP LOCKED never waits, so the order of the locks does not matter.
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
    WHERE j.id = ANY(ARRAY(SELECT id FROM lost))
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

-- name: recovery_probe
-- Which workers' sessions ended: try each live worker's liveness lock (a transaction lock,
-- released when this statement ends; it fails while the worker's session holds it). A free
-- lock marks the worker lost (lost_at, kept from the first time it was seen free); a held
-- one clears the mark. Returns how many workers have been lost for longer than the grace
-- period, whose jobs recovery_recover then takes back.
WITH seen AS (
    SELECT w.worker_id, pg_try_advisory_xact_lock(w.liveness_key) AS free
    FROM {prefix}workers AS w
    WHERE w.liveness_key IS NOT NULL AND w.expires_at > now()
), marked AS (
    UPDATE {prefix}workers AS w
    SET lost_at = CASE WHEN s.free THEN now() END
    FROM seen AS s
    WHERE w.worker_id = s.worker_id AND (w.lost_at IS NULL) = s.free
      AND {leader_fence}
    RETURNING w.worker_id
)
SELECT
    (SELECT count(*) FROM marked) AS changed,
    (SELECT count(*) FROM seen AS s JOIN {prefix}workers AS w ON w.worker_id = s.worker_id
     WHERE s.free AND w.lost_at <= now() - make_interval(secs => %(grace)s::float8)) AS dead;

-- name: recovery_forget_workers
-- Delete heartbeat rows that expired long ago and hold no running job any more (their jobs
-- were recovered meanwhile; a worker that comes back re-registers with its next heartbeat).
WITH forgotten AS (
    DELETE FROM {prefix}workers AS w
    WHERE w.expires_at < now() - make_interval(secs => %(after)s)
      AND NOT EXISTS (
          SELECT 1 FROM {prefix}jobs AS j WHERE j.taken_by = w.worker_id AND j.state = 'running'
      )
      AND {leader_fence}
    RETURNING w.worker_id
)
SELECT count(*) AS forgotten FROM forgotten;
