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
    INSERT INTO {prefix}leader AS l (id, worker_id, last_seen, expires_at, term, liveness_key)
    VALUES (1, %(worker_id)s, now(), now() + make_interval(secs => %(timeout)s), 1,
            %(liveness_key)s)
    ON CONFLICT (id) DO UPDATE
        SET worker_id = EXCLUDED.worker_id,
            last_seen = EXCLUDED.last_seen,
            expires_at = EXCLUDED.expires_at,
            term = l.term + 1,
            liveness_key = EXCLUDED.liveness_key,
            lost_at = NULL
        WHERE l.expires_at <= now() OR l.worker_id = EXCLUDED.worker_id
            -- The holder's session ended over the grace period ago (leader_probe marked it)
            -- and its liveness lock is still free: its lease dies with it.
            OR (l.lost_at <= now() - make_interval(secs => %(grace)s::float8)
                AND pg_try_advisory_xact_lock(l.liveness_key))
    RETURNING l.term
)
SELECT
    (SELECT term FROM taken) AS term,
    (SELECT worker_id FROM {prefix}leader WHERE id = 1) AS holder,
    (SELECT extract(epoch FROM expires_at - now())::float8 FROM {prefix}leader WHERE id = 1)
        AS remaining;

-- name: leader_probe
-- A follower's check of the leader's session: its liveness lock free marks the lease lost
-- (lost_at, from the first time it was seen free), held clears the mark. Writes only when the
-- mark changes. Returns whether an election may take over now (lost for the grace period).
WITH current AS (
    SELECT l.liveness_key, l.lost_at, pg_try_advisory_xact_lock(l.liveness_key) AS free
    FROM {prefix}leader AS l
    WHERE l.id = 1 AND l.liveness_key IS NOT NULL AND l.expires_at > now()
      AND l.worker_id <> %(worker_id)s
), marked AS (
    UPDATE {prefix}leader AS l
    SET lost_at = CASE WHEN c.free THEN now() END
    FROM current AS c
    WHERE l.id = 1 AND (l.lost_at IS NULL) = c.free
    RETURNING l.lost_at
)
SELECT coalesce((
    SELECT c.free AND c.lost_at <= now() - make_interval(secs => %(grace)s::float8)
    FROM current AS c
), false) AS takeover,
(SELECT c.free FROM current AS c) AS free;

-- name: leader_renew
-- Extend the lease; only the current holder of a live lease (worker and term) can. A renewal
-- is announced (leadership.renewed, as Chancy 0.26 did) when notifications are on.
WITH renewed AS (
    UPDATE {prefix}leader
    SET last_seen = now(), expires_at = now() + make_interval(secs => %(timeout)s),
        liveness_key = %(liveness_key)s
    WHERE id = 1 AND worker_id = %(worker_id)s AND term = %(term)s AND expires_at > now()
    RETURNING term
), told AS (
    SELECT pg_notify('{prefix}events', json_build_object(
        't', 'leadership.renewed', 'worker_id', %(worker_id)s::text, 'term', r.term)::text)
    FROM renewed AS r
    WHERE %(notify)s
)
SELECT r.term, (SELECT count(*) FROM told) AS notified FROM renewed AS r;

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
