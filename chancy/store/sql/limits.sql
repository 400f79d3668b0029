-- Flow control: claims under a queue's global limits, and what those limits use now.
--
-- Only queues with a limit come here; every other queue claims with job_fetch alone, with no
-- lock and no extra query. A limited claim is one transaction of two statements: limit_lock,
-- then job_fetch_limited (queue limits) or job_fetch_keyed (queue and per-key limits). The
-- lock makes claimers of one queue take turns, and because each statement of a READ COMMITTED
-- transaction takes a new snapshot, the claim statement, which starts after the lock is held,
-- sees every earlier claim of the queue: its starts in limit_starts and its running jobs.
--
-- Rate limits count starts in limit_starts (one row per claim, and per key), logged at
-- clock_timestamp() after the lock, so they are in claim order. A window is widened by
-- %(margin)s seconds: a job starts a few ms after its claim commits, and the widening keeps
-- the starts themselves, not only the claims, within the limit. Concurrency limits count the
-- queue's `running` rows, so a job counts until its outcome is written, and the running jobs
-- of a crashed worker count until Recovery returns them. They are counted through the running
-- jobs index (jobs_running): no index was added for them, so that a claim or completion of an
-- unlimited queue writes nothing more; the count reads every running job of the installation.
--
-- Both claim queries return one row per claimed job (the jobs columns) with the status columns
-- limit_*, or a single row with NULL job columns when nothing was claimed:
--   limit_held      work is waiting that the limits (not the worker's free slots) held back
--   limit_full      the queue's own limits are used up: a new push cannot start sooner
--   limit_retry_ms  when a rate limit is what holds work back: ms until its oldest start
--                   leaves the window
--   limit_wake_ids  running jobs (including the ones just claimed) whose end frees room under
--                   a concurrency limit; limit_wake_any when there were too many to list
--   limit_more      (job_fetch_keyed) room is left and a key offered only its fair share of
--                   this claim: claim again at once

-- name: limit_lock
SELECT pg_advisory_xact_lock(hashtextextended('chancy-limit:{prefix}' || %(queue)s, 0));

-- name: job_fetch_limited
-- Claim like job_fetch, within the queue's rate_limit and global_concurrency (read from the
-- stored queue, so every worker applies the same numbers).
WITH conf AS (
    SELECT q.rate_limit, q.rate_limit_window, q.global_concurrency, clock_timestamp() AS ts
    FROM {prefix}queues AS q
    WHERE q.name = %(queue)s
), {claim_room}
), picked AS (
    SELECT j.ctid FROM {prefix}jobs AS j
    WHERE j.queue = %(queue)s
      AND j.state IN ('pending', 'retrying')
      AND j.scheduled_at <= now()
      AND j.attempts < j.max_attempts
    ORDER BY j.priority DESC, j.id
    LIMIT coalesce((SELECT n FROM room), 0)
    FOR UPDATE SKIP LOCKED
), {claim_picked}
), {queue_starts}
), status AS (
    SELECT
        {more_due_than_picked} AS limit_held,
        room.n < %(limit)s::integer AND taken.n >= room.n AS limit_full,
        false AS limit_more,
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
-- The status repeats on every row; its id list is sent once, and not at all when too long.
{limited_claim_result};

-- name: job_fetch_keyed
-- Claim within the queue's limits and its per-key limits (partition_concurrency,
-- partition_rate_limit per partition_rate_limit_window). The distinct keys of waiting jobs
-- are found by a skip-scan over jobs_claim_key (one index descent per key, however many jobs
-- a key has). Each key with room offers its first jobs (one more descent), at most its fair
-- share of the claim, and the best of those in priority order are claimed. A key at its
-- limit costs one descent and blocks nothing. Cost per claim: O(K log n) for K keys with
-- waiting jobs, plus O(free slots) jobs read, the running jobs and the starts in the queue's
-- windows. Keyless jobs are stored with the key '' on such a queue and are limited only by
-- the queue's own limits.
WITH RECURSIVE conf AS (
    SELECT q.rate_limit, q.rate_limit_window, q.global_concurrency, q.partition_concurrency,
           q.partition_rate_limit, q.partition_rate_limit_window, clock_timestamp() AS ts
    FROM {prefix}queues AS q
    WHERE q.name = %(queue)s
), {claim_room}
), {waiting_keys}
), key_running AS (
    SELECT j.partition_key AS k, count(*)::integer AS n, array_agg(j.id) AS ids
    FROM {prefix}jobs AS j
    WHERE j.queue = %(queue)s AND j.state = 'running' AND j.partition_key <> ''
      AND EXISTS (SELECT 1 FROM conf WHERE conf.partition_concurrency IS NOT NULL)
    GROUP BY j.partition_key
), key_used AS (
    SELECT s.partition_key AS k, sum(s.n)::integer AS n, min(s.started_at) AS oldest
    FROM conf
    JOIN {prefix}limit_starts AS s
      ON s.queue = %(queue)s
     AND s.partition_key IS NOT NULL
     AND s.started_at > conf.ts
         - make_interval(secs => conf.partition_rate_limit_window + %(margin)s::float8)
    GROUP BY s.partition_key
), key_room AS (
    SELECT keys.k,
           CASE WHEN keys.k = '' THEN room.n
                ELSE greatest(0, least(
                    room.n,
                    conf.partition_concurrency - coalesce(r.n, 0),
                    conf.partition_rate_limit - coalesce(u.n, 0)
                ))
           END AS n,
           coalesce(r.n, 0) AS running_n,
           r.ids AS running_ids,
           coalesce(u.n, 0) AS used_n,
           u.oldest
    FROM keys
    CROSS JOIN conf
    CROSS JOIN room
    LEFT JOIN key_running AS r ON r.k = keys.k
    LEFT JOIN key_used AS u ON u.k = keys.k
    WHERE keys.k IS NOT NULL
), fair AS (
    -- Each key with room offers at most its share of the claim (at least one job), so keys
    -- take turns rather than the highest-priority key filling every free slot, and a claim
    -- reads O(keys + slots) jobs, not O(keys x slots).
    SELECT greatest(1, ceil(room.n::numeric / greatest(1, count(kr.k))))::integer AS cap
    FROM room
    LEFT JOIN key_room AS kr ON kr.n > 0
    GROUP BY room.n
), candidates AS (
    SELECT c.id, c.priority, kr.k, fair.cap < kr.n AS capped
    FROM key_room AS kr
    CROSS JOIN fair
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority FROM {prefix}jobs AS j
        WHERE j.queue = %(queue)s
          AND j.partition_key = kr.k
          AND j.state IN ('pending', 'retrying')
          AND j.scheduled_at <= now()
          AND j.attempts < j.max_attempts
        ORDER BY j.priority DESC, j.id
        LIMIT least(kr.n, fair.cap)
    ) AS c
    WHERE kr.n > 0
    UNION ALL
    -- A keyless job stored with NULL (pushed while per-key limits were being set on the
    -- queue) is taken once it reaches the front of the queue.
    SELECT f.id, f.priority, NULL, false FROM (
        SELECT j.id, j.priority, j.partition_key FROM {prefix}jobs AS j
        WHERE j.queue = %(queue)s
          AND j.state IN ('pending', 'retrying')
          AND j.scheduled_at <= now()
          AND j.attempts < j.max_attempts
        ORDER BY j.priority DESC, j.id
        LIMIT %(front)s
    ) AS f
    WHERE f.partition_key IS NULL
), picked AS (
    SELECT j.ctid FROM {prefix}jobs AS j
    WHERE j.id = ANY(ARRAY(
            SELECT c.id FROM candidates AS c
            ORDER BY c.priority DESC, c.id
            LIMIT coalesce((SELECT n FROM room), 0)
        ))
      -- Still waiting (not claimed, cancelled or finished since the snapshot); written so
      -- that the planner looks the ids up by primary key rather than scanning jobs_claim.
      AND j.state NOT IN ('running', 'succeeded', 'failed')
    FOR UPDATE SKIP LOCKED
), {claim_picked}
), taken_by_key AS (
    SELECT c.partition_key AS k, count(*)::integer AS n FROM claimed AS c
    WHERE c.partition_key <> '' AND c.state = 'running'
    GROUP BY c.partition_key
), logged AS (
    INSERT INTO {prefix}limit_starts (queue, partition_key, started_at, n)
    SELECT %(queue)s, NULL, conf.ts, taken.n
    FROM conf, taken
    WHERE conf.rate_limit IS NOT NULL AND taken.n > 0
    UNION ALL
    SELECT %(queue)s, t.k, conf.ts, t.n
    FROM conf, taken_by_key AS t
    WHERE conf.partition_rate_limit IS NOT NULL
), pruned AS (
    DELETE FROM {prefix}limit_starts AS s
    USING conf
    WHERE s.queue = %(queue)s
      AND s.started_at <= conf.ts - make_interval(secs => %(margin)s::float8 + CASE
          WHEN s.partition_key IS NULL THEN coalesce(conf.rate_limit_window, 0)
          ELSE coalesce(conf.partition_rate_limit_window, 0)
      END)
), key_after AS (
    SELECT kr.k, kr.running_ids, kr.oldest,
           kr.running_n + coalesce(t.n, 0) AS running_n,
           kr.used_n + coalesce(t.n, 0) AS used_n
    FROM key_room AS kr
    LEFT JOIN taken_by_key AS t ON t.k = kr.k
    WHERE kr.k <> ''
), key_status AS (
    SELECT
        min(coalesce(ka.oldest, conf.ts)
            + make_interval(secs => conf.partition_rate_limit_window + %(margin)s::float8))
            FILTER (WHERE ka.used_n >= conf.partition_rate_limit) AS retry_at,
        coalesce(array_agg(w.id) FILTER (WHERE w.id IS NOT NULL), '{}') AS wake_ids
    FROM conf
    CROSS JOIN key_after AS ka
    LEFT JOIN LATERAL (
        SELECT unnest(ka.running_ids) AS id
        WHERE ka.running_n >= conf.partition_concurrency
    ) AS w ON true
), status AS (
    SELECT
        {more_due_than_picked} AS limit_held,
        room.n < %(limit)s::integer AND taken.n >= room.n AS limit_full,
        taken.n < room.n AND EXISTS (
            SELECT 1 FROM candidates AS c, fair
            WHERE c.capped
            GROUP BY c.k, fair.cap
            HAVING count(*) >= fair.cap
        ) AS limit_more,
        ceil(1000 * extract(epoch FROM least(
            CASE WHEN conf.rate_limit IS NOT NULL AND used.n + taken.n >= conf.rate_limit THEN
                coalesce(used.oldest, conf.ts)
                + make_interval(secs => conf.rate_limit_window + %(margin)s::float8)
            END,
            key_status.retry_at
        ) - conf.ts))::integer AS limit_retry_ms,
        CASE WHEN conf.global_concurrency IS NOT NULL
                  AND running.n + taken.n >= conf.global_concurrency THEN
            coalesce(running.ids, '{}')
        ELSE '{}' END
        || key_status.wake_ids
        || CASE WHEN conf.global_concurrency IS NOT NULL
                     OR conf.partition_concurrency IS NOT NULL THEN taken.ids
           ELSE '{}' END AS limit_wake_ids,
        running.n + cardinality(key_status.wake_ids) > %(max_wake)s AS limit_wake_any
    FROM conf, used, running, room, taken, key_status
)
-- The status repeats on every row; its id list is sent once, and not at all when too long.
{limited_claim_result};

-- name: limit_usage
-- What a queue's limits use now, for dashboards: running jobs and starts in the current
-- window, for the queue (partition_key NULL, whole_queue true) and for each key that has
-- running jobs or starts in its window. Keyless jobs count for the queue only.
WITH conf AS (
    SELECT q.rate_limit_window, q.partition_rate_limit_window, clock_timestamp() AS ts
    FROM {prefix}queues AS q
    WHERE q.name = %(queue)s
), key_running AS (
    SELECT j.partition_key AS k, count(*)::integer AS n
    FROM {prefix}jobs AS j
    WHERE j.queue = %(queue)s AND j.state = 'running' AND j.partition_key <> ''
    GROUP BY j.partition_key
), key_started AS (
    SELECT s.partition_key AS k, sum(s.n)::integer AS n
    FROM conf
    JOIN {prefix}limit_starts AS s
      ON s.queue = %(queue)s
     AND s.partition_key IS NOT NULL
     AND s.started_at > conf.ts - make_interval(secs => conf.partition_rate_limit_window)
    GROUP BY s.partition_key
)
SELECT NULL::text AS partition_key, true AS whole_queue,
       (SELECT count(*)::integer FROM {prefix}jobs AS j
        WHERE j.queue = %(queue)s AND j.state = 'running') AS running,
       CASE WHEN conf.rate_limit_window IS NOT NULL THEN (
           SELECT coalesce(sum(s.n), 0)::integer FROM {prefix}limit_starts AS s
           WHERE s.queue = %(queue)s AND s.partition_key IS NULL
             AND s.started_at > conf.ts - make_interval(secs => conf.rate_limit_window)
       ) END AS started
FROM conf
UNION ALL
SELECT coalesce(r.k, s.k), false, coalesce(r.n, 0),
       CASE WHEN (SELECT partition_rate_limit_window FROM conf) IS NOT NULL
           THEN coalesce(s.n, 0) END
FROM key_running AS r
FULL JOIN key_started AS s ON s.k = r.k
WHERE EXISTS (SELECT 1 FROM conf);
