-- name: worker_heartbeat
-- Register or refresh a worker; its lease on life ends at now() + timeout (database time).
-- With notify, it also tells every worker's hub (worker.announced, as Chancy 0.26 did on each
-- heartbeat), sent on commit.
WITH beat AS (
    INSERT INTO {prefix}workers (worker_id, tags, queues, last_seen, expires_at, hostname, pid,
        version, liveness_key)
    VALUES (%(worker_id)s, %(tags)s, %(queues)s, now(), now() + make_interval(secs => %(timeout)s),
        %(hostname)s, %(pid)s, %(version)s, %(liveness_key)s)
    ON CONFLICT (worker_id) DO UPDATE SET
        -- A process's first beat under a reused worker id starts a new life: recovery compares
        -- started_at with its jobs' started_at so the old process's claims are not shielded.
        started_at = CASE WHEN %(first)s THEN now() ELSE {prefix}workers.started_at END,
        hostname = EXCLUDED.hostname,
        pid = EXCLUDED.pid,
        version = EXCLUDED.version,
        tags = EXCLUDED.tags,
        queues = EXCLUDED.queues,
        last_seen = EXCLUDED.last_seen,
        expires_at = EXCLUDED.expires_at,
        -- A new incarnation's lock replaces the old one's, and is not lost.
        lost_at = CASE WHEN {prefix}workers.liveness_key IS DISTINCT FROM EXCLUDED.liveness_key
                       THEN NULL ELSE {prefix}workers.lost_at END,
        liveness_key = EXCLUDED.liveness_key
    RETURNING worker_id, last_seen, expires_at
), announced AS (
    SELECT pg_notify('{prefix}events',
        json_build_object('t', 'worker.announced', 'worker_id', beat.worker_id)::text)
    FROM beat
    WHERE %(notify)s
)
SELECT beat.worker_id, beat.last_seen, beat.expires_at,
    (SELECT count(*) FROM announced) AS announced
FROM beat;

-- name: worker_liveness_restored
-- A worker took its liveness lock back after its session ended: it is not lost any more
-- (here and, if it leads, on the lease). Returns when it had been seen lost (NULL if not)
-- and the database's now, so the worker can tell whether recovery may have taken its jobs.
WITH mine AS (
    SELECT w.lost_at FROM {prefix}workers AS w
    WHERE w.worker_id = %(worker_id)s AND w.liveness_key = %(key)s
    FOR UPDATE
), cleared AS (
    UPDATE {prefix}workers AS w SET lost_at = NULL
    WHERE w.worker_id = %(worker_id)s AND w.liveness_key = %(key)s AND w.lost_at IS NOT NULL
    RETURNING 1
), lease AS (
    UPDATE {prefix}leader AS l SET lost_at = NULL
    WHERE l.id = 1 AND l.worker_id = %(worker_id)s AND l.liveness_key = %(key)s
      AND l.lost_at IS NOT NULL
    RETURNING 1
)
SELECT (SELECT lost_at FROM mine) AS lost_at, now() AS now,
       (SELECT count(*) FROM cleared) + (SELECT count(*) FROM lease) AS cleared;

-- name: worker_get_all
SELECT w.*, (l.worker_id IS NOT NULL) AS is_leader
FROM {prefix}workers AS w
LEFT JOIN {prefix}leader AS l ON l.worker_id = w.worker_id AND l.expires_at > now()
ORDER BY w.worker_id;

-- name: worker_delete
-- A stopping worker's row goes, unless jobs are still marked running under it (giving them
-- back failed): then it stays to expire, and recovery finds those jobs through it.
DELETE FROM {prefix}workers AS w
WHERE w.worker_id = %(worker_id)s
  AND NOT EXISTS (
      SELECT 1 FROM {prefix}jobs AS j WHERE j.taken_by = w.worker_id AND j.state = 'running'
  );
