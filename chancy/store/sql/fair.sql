-- Weighted fair share across the partition keys of a queue (Queue(fairness=True)).
--
-- Stride scheduling: each key with waiting work has a pass in {prefix}fair_keys; serving a
-- job of the key moves its pass on by 1/weight. A claim offers, per key, its next jobs in the
-- key's own order (priority, then age), the r-th at pass + r/weight, and takes the jobs with
-- the smallest of those values. Over any run of claims each busy key is served in proportion
-- to its weight, whatever the claim sizes, and a key's order is never changed.
--
-- A key that had no waiting work at the previous claim has no row: it starts level with the
-- key furthest behind (the smallest pass) and keeps that place from then on, so a quiet tenant's new job is served within a
-- claim or two, and an idle key earns no credit to spend later. Rows of keys whose work is
-- gone are deleted by the next claim.
--
-- Like the claims in limits.sql it runs after limit_lock (claimers of the queue take turns, so
-- the passes are read and written by one claim at a time) and within the queue's own limits.
-- Cost per claim: a skip-scan over jobs_claim_key for the K keys with waiting work (one index
-- descent each), each key's pass by primary key, at most its share of the claim's jobs (at
-- least one) from jobs_claim_key: O(K log n + slots), never a walk of a key's backlog.

-- name: job_fetch_fair
WITH RECURSIVE conf AS (
    SELECT q.rate_limit, q.rate_limit_window, q.global_concurrency,
           coalesce(q.partition_weights, '{}'::jsonb) AS weights, clock_timestamp() AS ts
    FROM {prefix}queues AS q
    WHERE q.name = %(queue)s AND q.state <> 'paused'
), {claim_room}
), {waiting_keys}
), active AS (
    -- Jobs without a key (stored with '') are one key weighted like the unlisted ones.
    SELECT keys.k,
           coalesce(
               (conf.weights ->> (CASE WHEN keys.k = '' THEN '*' ELSE keys.k END))::float8,
               (conf.weights ->> '*')::float8,
               1
           ) AS w,
           (SELECT f.pass FROM {prefix}fair_keys AS f
            WHERE f.queue = %(queue)s AND f.partition_key = keys.k) AS pass
    FROM keys
    CROSS JOIN conf
    WHERE keys.k IS NOT NULL
), level AS (
    SELECT coalesce(min(a.pass), 0) AS v, coalesce(sum(a.w), 1) AS total FROM active AS a
), shares AS (
    -- Each key offers at least one job and otherwise its weight's share of the claim: what
    -- is left over when a key has fewer due jobs is claimed again at once (limit_more).
    SELECT a.k, a.w, a.pass IS NULL AS new_key, coalesce(a.pass, level.v) AS pass,
           greatest(1, ceil(room.n * a.w / level.total))::integer AS cap
    FROM active AS a, level, room
    WHERE room.n > 0
), candidates AS (
    SELECT c.id, c.priority, s.k, s.pass + c.rank / s.w AS vpass, s.cap
    FROM shares AS s
    CROSS JOIN LATERAL (
        SELECT o.id, o.priority,
               row_number() OVER (ORDER BY o.priority DESC, o.id) AS rank
        FROM (
            SELECT j.id, j.priority FROM {prefix}jobs AS j
            WHERE j.queue = %(queue)s
              AND j.partition_key = s.k
              AND j.state IN ('pending', 'retrying')
              AND j.scheduled_at <= now()
              AND j.attempts < j.max_attempts
            ORDER BY j.priority DESC, j.id
            LIMIT s.cap
        ) AS o
    ) AS c
    UNION ALL
    -- A keyless job stored with NULL (pushed while the queue was being made fair) is taken
    -- once it reaches the front of the queue, level with the key furthest behind.
    SELECT f.id, f.priority, NULL, (SELECT v FROM level), NULL FROM (
        SELECT j.id, j.priority, j.partition_key FROM {prefix}jobs AS j
        WHERE j.queue = %(queue)s
          AND j.state IN ('pending', 'retrying')
          AND j.scheduled_at <= now()
          AND j.attempts < j.max_attempts
          AND EXISTS (SELECT 1 FROM room WHERE room.n > 0)
        ORDER BY j.priority DESC, j.id
        LIMIT %(front)s
    ) AS f
    WHERE f.partition_key IS NULL
), picked AS (
    SELECT j.ctid FROM {prefix}jobs AS j
    WHERE j.id = ANY(ARRAY(
            SELECT c.id FROM candidates AS c
            ORDER BY c.vpass, c.priority DESC, c.id
            LIMIT coalesce((SELECT n FROM room), 0)
        ))
      -- Still waiting; written so that the ids are looked up by primary key.
      AND j.state NOT IN ('running', 'succeeded', 'failed')
    FOR UPDATE SKIP LOCKED
), {claim_picked}
), taken_by_key AS (
    SELECT c.partition_key AS k, count(*)::integer AS n FROM claimed AS c
    WHERE c.partition_key IS NOT NULL AND c.state = 'running'
    GROUP BY c.partition_key
), moved AS (
    -- The keys served move on; a new key gets its starting pass even when it was not served,
    -- so that it keeps its place while the others move on.
    INSERT INTO {prefix}fair_keys AS f (queue, partition_key, pass)
    SELECT %(queue)s, s.k, s.pass + coalesce(t.n, 0) / s.w
    FROM shares AS s
    LEFT JOIN taken_by_key AS t ON t.k = s.k
    WHERE t.n IS NOT NULL OR s.new_key
    ON CONFLICT (queue, partition_key) DO UPDATE SET pass = EXCLUDED.pass
), forgotten AS (
    DELETE FROM {prefix}fair_keys AS f
    WHERE f.queue = %(queue)s
      AND EXISTS (SELECT 1 FROM room WHERE room.n > 0)
      AND f.partition_key <> ALL(ARRAY(SELECT a.k FROM active AS a))
), {queue_starts}
), status AS (
    SELECT
        {more_due_than_picked} AS limit_held,
        room.n < %(limit)s::integer AND taken.n >= room.n AS limit_full,
        taken.n < room.n AND EXISTS (
            SELECT 1 FROM candidates AS c
            WHERE c.k IS NOT NULL
            GROUP BY c.k, c.cap
            HAVING count(*) >= c.cap
        ) AS limit_more,
        CASE WHEN conf.rate_limit IS NOT NULL AND used.n + taken.n >= conf.rate_limit THEN
            ceil(1000 * extract(epoch FROM coalesce(used.oldest, conf.ts)
                + make_interval(secs => conf.rate_limit_window + %(margin)s::float8)
                - conf.ts))::integer
        END AS limit_retry_ms,
        CASE WHEN conf.global_concurrency IS NOT NULL
                  AND running.n + taken.n >= conf.global_concurrency THEN
            coalesce(running.ids, '{}') || taken.ids
        END AS limit_wake_ids,
        running.n > %(max_wake)s AS limit_wake_any
    FROM conf, used, running, room, taken
)
{limited_claim_result};
