-- The leadership lease: one row (id = 1) in {prefix}leader. Every statement computes time
-- with the database's now(), so no worker's clock can grant or extend a lease. A term grows by
-- one at each election and the row is never deleted (a resignation only expires it), so the
-- pair (worker_id, term) names one tenure for ever and can fence the leader's writes.

-- name: leader_elect
-- Take the lease if nobody holds it, it has expired, or this worker already holds it (after a
-- restart of its loop, or when it stopped trusting a lease it still had); the new term is the
-- old one plus one, so writes fenced by an earlier term of the same worker stop applying.
-- Returns term (NULL when someone else holds a live lease), and the holder and the seconds
-- left on its lease as the statement's snapshot saw them, so a follower can try again right
-- when that lease runs out.
WITH taken AS (
    INSERT INTO {prefix}leader AS l (id, worker_id, last_seen, expires_at, term)
    VALUES (1, %(worker_id)s, now(), now() + make_interval(secs => %(timeout)s), 1)
    ON CONFLICT (id) DO UPDATE
        SET worker_id = EXCLUDED.worker_id,
            last_seen = EXCLUDED.last_seen,
            expires_at = EXCLUDED.expires_at,
            term = l.term + 1
        WHERE l.expires_at <= now() OR l.worker_id = EXCLUDED.worker_id
    RETURNING l.term
)
SELECT
    (SELECT term FROM taken) AS term,
    (SELECT worker_id FROM {prefix}leader WHERE id = 1) AS holder,
    (SELECT extract(epoch FROM expires_at - now())::float8 FROM {prefix}leader WHERE id = 1)
        AS remaining;

-- name: leader_renew
-- Extend the lease; only the current holder of a live lease (worker and term) can.
UPDATE {prefix}leader
SET last_seen = now(), expires_at = now() + make_interval(secs => %(timeout)s)
WHERE id = 1 AND worker_id = %(worker_id)s AND term = %(term)s AND expires_at > now()
RETURNING term;

-- name: leader_resign
-- Give up the lease at once (expire it, keeping the term) and tell the followers, so one
-- takes over without waiting for the lease to run out. Only this worker's live lease changes.
WITH resigned AS (
    UPDATE {prefix}leader
    SET expires_at = now()
    WHERE id = 1 AND worker_id = %(worker_id)s AND expires_at > now()
    RETURNING term
), told AS (
    SELECT pg_notify('{prefix}events', json_build_object(
        't', 'leadership.resigned', 'worker_id', %(worker_id)s::text, 'term', r.term)::text)
    FROM resigned AS r
    WHERE %(notify)s
)
SELECT r.term, (SELECT count(*) FROM told) AS notified FROM resigned AS r;

-- name: leader_get
SELECT worker_id, term, last_seen, expires_at, expires_at > now() AS live
FROM {prefix}leader WHERE id = 1;
