-- name: worker_heartbeat
-- Register or refresh a worker; its lease on life ends at now() + timeout (database time).
INSERT INTO {prefix}workers (worker_id, tags, queues, last_seen, expires_at, hostname, pid,
    version)
VALUES (%(worker_id)s, %(tags)s, %(queues)s, now(), now() + make_interval(secs => %(timeout)s),
    %(hostname)s, %(pid)s, %(version)s)
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
    expires_at = EXCLUDED.expires_at
RETURNING worker_id, last_seen, expires_at;

-- name: worker_get_all
SELECT w.*, (l.worker_id IS NOT NULL) AS is_leader
FROM {prefix}workers AS w
LEFT JOIN {prefix}leader AS l ON l.worker_id = w.worker_id AND l.expires_at > now()
ORDER BY w.worker_id;

-- name: worker_delete
DELETE FROM {prefix}workers WHERE worker_id = %(worker_id)s;
