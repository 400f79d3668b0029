-- Strict order per partition key (Queue(partition_ordered=True)).
--
-- A key's next job is its oldest waiting job (by id, which is push order), whatever its
-- priority or scheduled time; it may start only when it is due, no job of the key runs, and
-- (partition_on_failure = 'hold') no job of the key has failed for good. So a job that failed
-- and waits for its retry holds its key (it is still the key's oldest waiting job), a running
-- job holds it until its outcome is written, and the running job of a crashed worker holds it
-- until Recovery gives it back, when it is again the key's oldest. Jobs without a key (stored
-- with the key '') are not ordered: they are claimed like any queue's, in priority order.
--
-- It runs after limit_lock, so the claimers of the queue take turns, and the statement's
-- snapshot, taken after the lock, sees every earlier claim: two workers never start two jobs
-- of one key. Cost per claim: a skip-scan over jobs_claim_key for the K keys with waiting
-- work, one descent of jobs_key_order per key for its head, one probe of jobs_running_queue
-- (and of jobs_failed_key when holding): O(K log n), never a walk of a key's backlog.

-- name: job_fetch_ordered
WITH RECURSIVE conf AS (
    SELECT q.rate_limit, q.rate_limit_window, q.global_concurrency,
           q.partition_on_failure = 'hold' AS hold, clock_timestamp() AS ts
    FROM {prefix}queues AS q
    WHERE q.name = %(queue)s AND q.state <> 'paused'
), {claim_room}
), {waiting_keys}
), heads AS (
    -- (The probes are LATERAL with LIMIT 1 so that each is one index descent per key: as
    -- plain EXISTS the planner may hash a scan of every failed job instead.)
    SELECT keys.k, h.id, h.priority, h.scheduled_at,
           h.scheduled_at <= now() AND h.attempts < h.max_attempts AS due,
           r.n > 0 AS busy,
           f.n > 0 AS held
    FROM keys
    CROSS JOIN conf
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM (
            SELECT 1 FROM {prefix}jobs AS r
            WHERE r.queue = %(queue)s AND r.partition_key = keys.k AND r.state = 'running'
            LIMIT 1
        ) AS one
    ) AS r
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM (
            SELECT 1 FROM {prefix}jobs AS f
            WHERE conf.hold
              AND f.queue = %(queue)s AND f.partition_key = keys.k AND f.state = 'failed'
            LIMIT 1
        ) AS one
    ) AS f
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.scheduled_at, j.attempts, j.max_attempts
        FROM {prefix}jobs AS j
        WHERE j.queue = %(queue)s
          AND j.partition_key = keys.k
          AND j.state IN ('pending', 'retrying')
        ORDER BY j.id
        LIMIT 1
    ) AS h
    WHERE keys.k IS NOT NULL AND keys.k <> ''
), candidates AS MATERIALIZED (
    -- (Materialized: a handful of rows, sorted once below, rather than a merge of sorted
    -- index scans that the planner may pick with the wrong statistics.)
    SELECT h.id, h.priority FROM heads AS h
    WHERE h.due AND NOT h.busy AND NOT h.held
    UNION ALL
    -- Jobs without a key are not ordered.
    SELECT u.id, u.priority FROM (
        SELECT j.id, j.priority FROM {prefix}jobs AS j
        WHERE j.queue = %(queue)s
          AND j.partition_key = ''
          AND j.state IN ('pending', 'retrying')
          AND j.scheduled_at <= now()
          AND j.attempts < j.max_attempts
          AND EXISTS (SELECT 1 FROM keys WHERE keys.k = '')
        ORDER BY j.priority DESC, j.id
        LIMIT coalesce((SELECT n FROM room), 0)
    ) AS u
    UNION ALL
    -- A keyless job stored with NULL (pushed while the queue was being made ordered) is
    -- taken once it reaches the front of the queue.
    SELECT f.id, f.priority FROM (
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
            ORDER BY c.priority DESC, c.id
            LIMIT coalesce((SELECT n FROM room), 0)
        ))
      -- Still waiting; written so that the ids are looked up by primary key.
      AND j.state NOT IN ('running', 'succeeded', 'failed')
    FOR UPDATE SKIP LOCKED
), {claim_picked}
), blockers AS (
    -- Running jobs whose end lets a waiting key go on.
    SELECT coalesce(array_agg(b.id), '{}') AS ids, count(*) > %(max_wake)s AS too_many FROM (
        SELECT r.id FROM heads AS h
        JOIN {prefix}jobs AS r
          ON r.queue = %(queue)s AND r.partition_key = h.k AND r.state = 'running'
        WHERE h.busy
        LIMIT %(max_wake)s + 1
    ) AS b
), {queue_starts}
), status AS (
    SELECT
        -- Waiting keys were held back (a running or failed job, a retry not yet due), not
        -- by the worker's free slots.
        taken.n < %(limit)s::integer AND EXISTS (
            SELECT 1 FROM heads AS h WHERE h.busy OR h.held OR NOT h.due
        ) AS limit_held,
        room.n < %(limit)s::integer AND taken.n >= room.n AS limit_full,
        false AS limit_more,
        ceil(1000 * extract(epoch FROM least(
            CASE WHEN conf.rate_limit IS NOT NULL AND used.n + taken.n >= conf.rate_limit THEN
                coalesce(used.oldest, conf.ts)
                + make_interval(secs => conf.rate_limit_window + %(margin)s::float8)
            END,
            -- A key's next job that waits for its retry: claim again when it is due.
            (SELECT min(h.scheduled_at) FROM heads AS h
             WHERE h.scheduled_at > now() AND NOT h.busy AND NOT h.held)
        ) - conf.ts))::integer AS limit_retry_ms,
        coalesce(running.ids, '{}') || blockers.ids || taken.ids AS limit_wake_ids,
        blockers.too_many OR running.n > %(max_wake)s AS limit_wake_any
    FROM conf, used, running, room, taken, blockers
)
{limited_claim_result};
