-- Fragments shared by several .sql files, written once here. A query refers to one by its name
-- in braces (for example {leader_fence}); the loader puts the text in before the prefix.

-- name: leader_fence
-- The predicate every leader-only write carries (see chancy.plugins.leadership): it holds while
-- the lease named by %(leader)s and %(term)s is live in the database, and share-locks the lease
-- row so no election completes while the write is in flight. %(fenced)s false turns it off
-- (ImmediateLeadership, or no leadership plugin at all).
(NOT %(fenced)s OR EXISTS (
      SELECT 1 FROM {prefix}leader AS l
      WHERE l.id = 1 AND l.worker_id = %(leader)s AND l.term = %(term)s::bigint
        AND l.expires_at > now()
      FOR SHARE
  ))

-- name: claim_or_expire
-- The SET list of every claim (the limited claims here; job_fetch's function claim_jobs,
-- migration v0023, has a copy that must be kept the same): a picked job starts
-- running under a fresh claim_id, unless its deadline has passed, in which case it is never
-- started: it ends failed with an error saying so and meta.expired = true. The claim_id is
-- drawn once per statement (the sub-select runs once, as an InitPlan) and shared by the jobs
-- the claim takes: a run is its job's id and claim_id together, which every fenced write
-- matches, and a per-row gen_random_uuid() cost about 1.6 us per claimed job.
state = CASE WHEN (j.deadline <= now()) IS TRUE THEN 'failed' ELSE 'running' END,
    started_at = CASE WHEN (j.deadline <= now()) IS TRUE THEN j.started_at ELSE now() END,
    taken_by = CASE WHEN (j.deadline <= now()) IS TRUE THEN j.taken_by ELSE %(worker_id)s END,
    claim_id = CASE WHEN (j.deadline <= now()) IS TRUE THEN NULL
        ELSE (SELECT gen_random_uuid()) END,
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

-- name: claim_room
-- The CTEs every limited claim computes its room with, after its own `conf` (which has
-- rate_limit, rate_limit_window, global_concurrency and ts): the starts in the queue's rate
-- window (used), its running jobs when a global concurrency applies (running), and how many
-- jobs this claim may start (room).
used AS (
    SELECT coalesce(sum(s.n), 0)::integer AS n, min(s.started_at) AS oldest
    FROM conf
    JOIN {prefix}limit_starts AS s
      ON s.queue = %(queue)s
     AND s.partition_key IS NULL
     AND s.started_at > conf.ts
         - make_interval(secs => conf.rate_limit_window + %(margin)s::float8)
), running AS (
    SELECT count(*)::integer AS n, (array_agg(j.id))[1:%(max_wake)s] AS ids
    FROM {prefix}jobs AS j
    WHERE j.queue = %(queue)s AND j.state = 'running'
      AND EXISTS (SELECT 1 FROM conf WHERE conf.global_concurrency IS NOT NULL)
), room AS (
    SELECT greatest(0, least(
        %(limit)s::integer,
        conf.rate_limit - used.n,
        conf.global_concurrency - running.n
    )) AS n
    FROM conf, used, running

-- name: waiting_keys
-- The distinct partition keys of a queue's waiting jobs, by a skip-scan over jobs_claim_key
-- (one index descent per key, however many jobs a key has); nothing when there is no room.
keys AS (
    (
        SELECT j.partition_key AS k FROM {prefix}jobs AS j
        WHERE j.queue = %(queue)s
          AND j.state IN ('pending', 'retrying')
          AND j.partition_key IS NOT NULL
          AND EXISTS (SELECT 1 FROM room WHERE room.n > 0)
        ORDER BY j.partition_key
        LIMIT 1
    )
    UNION ALL
    SELECT (
        SELECT j.partition_key FROM {prefix}jobs AS j
        WHERE j.queue = %(queue)s
          AND j.state IN ('pending', 'retrying')
          AND j.partition_key IS NOT NULL
          AND j.partition_key > keys.k
        ORDER BY j.partition_key
        LIMIT 1
    )
    FROM keys
    WHERE keys.k IS NOT NULL

-- name: queue_starts
-- Log this claim's starts for the queue's rate limit (logged) and forget starts that left its
-- window (pruned); needs conf, taken and the margin parameter.
logged AS (
    INSERT INTO {prefix}limit_starts (queue, partition_key, started_at, n)
    SELECT %(queue)s, NULL, conf.ts, taken.n
    FROM conf, taken
    WHERE conf.rate_limit IS NOT NULL AND taken.n > 0
), pruned AS (
    DELETE FROM {prefix}limit_starts AS s
    USING conf
    WHERE s.queue = %(queue)s AND s.partition_key IS NULL
      AND s.started_at <= conf.ts
          - make_interval(secs => coalesce(conf.rate_limit_window, 0) + %(margin)s::float8)

-- name: limited_claim_result
-- What a limited claim returns: a row per claimed job with the status columns, or one row
-- with NULL job columns; the status repeats on every row, its id list is sent once, and not
-- at all when too long (see limits.sql).
SELECT claimed.*, status.limit_held, status.limit_full, status.limit_more,
       status.limit_retry_ms, status.limit_wake_any,
       CASE WHEN row_number() OVER () = 1 AND NOT status.limit_wake_any
           THEN status.limit_wake_ids
       END AS limit_wake_ids
FROM status
LEFT JOIN claimed ON true


-- name: claim_picked
-- Claim the picked rows (claimed: started, or failed when their deadline has passed) and
-- count those that started (taken); expired jobs use no room. `picked` gives the row
-- versions it locked (ctid), and the UPDATE goes straight to them (a TID scan, whatever the
-- statistics say): a locked row cannot move while this statement runs, and a lookup of the
-- ids by primary key would cost every claimed job a descent of that index (see migration
-- v0022, which does the same in claim_jobs). A row picked in a version newer than this
-- statement's snapshot (changed and committed by another session meanwhile, still waiting)
-- is not visible to the UPDATE: it stays waiting for the next claim.
claimed AS (
    UPDATE {prefix}jobs AS j
    SET {claim_or_expire}
    WHERE j.ctid = ANY(ARRAY(SELECT ctid FROM picked))
    RETURNING j.*
), taken AS (
    SELECT count(*)::integer AS n, coalesce(array_agg(c.id), '{}') AS ids FROM claimed AS c
    WHERE c.state = 'running'

-- name: more_due_than_picked
-- Whether more due jobs wait than were picked: read in claim order (jobs_claim), at most one
-- past the picked ones, so the answer never costs a walk of the queue. Needs taken, picked.
taken.n < %(limit)s::integer AND (
    SELECT count(*) FROM (
        SELECT 1 FROM {prefix}jobs AS j
        WHERE j.queue = %(queue)s
          AND j.state IN ('pending', 'retrying')
          AND j.scheduled_at <= now()
          AND j.attempts < j.max_attempts
        ORDER BY j.priority DESC, j.id
        LIMIT (SELECT count(*) FROM picked) + 1
    ) AS due
) > (SELECT count(*) FROM picked)

-- name: push_lean_rows
-- The INSERT ... SELECT of job_insert_many_lean and job_insert_many_plain (before ON
-- CONFLICT and RETURNING): the lean batch's columns; the others take their defaults, or the
-- queue's key '' and default deadline. A NULL %(unique_keys)s (a batch without keys) reads as
-- a column of NULLs (unnest pads the shorter arrays).
INSERT INTO {prefix}jobs AS j
        (id, queue, func, kwargs, priority, max_attempts, unique_key, partition_key, deadline)
    SELECT u.id, u.queue, u.func, u.kwargs, u.priority, u.max_attempts, u.unique_key,
           CASE WHEN kq.name IS NOT NULL THEN '' END,
           now() + make_interval(secs => dq.default_deadline)
    FROM unnest(
        %(ids)s::uuid[], %(queues)s::text[], %(funcs)s::text[], %(kwargs)s::jsonb[],
        %(priorities)s::int[], %(max_attempts)s::int[], %(unique_keys)s::text[]
    ) WITH ORDINALITY AS u(id, queue, func, kwargs, priority, max_attempts, unique_key, ord)
    {push_queue_joins}

-- name: push_queue_joins
-- Each pushed job's queue, if it stores keyless jobs with the key '' (kq) or has a default
-- deadline (dq), and the rows in the caller's order: the end of a push's INSERT ... SELECT
-- (job_insert_many and its lean and plain twins).
LEFT JOIN {prefix}queues AS kq
        ON kq.name = u.queue
       AND (kq.partition_concurrency IS NOT NULL OR kq.partition_rate_limit IS NOT NULL
            OR kq.fairness OR kq.partition_ordered)
    LEFT JOIN {prefix}queues AS dq
        ON dq.name = u.queue AND dq.default_deadline IS NOT NULL
    ORDER BY u.ord

-- name: push_skip_live_keys
-- A pushed job whose unique key is live (a job with that key waits or runs) is not inserted.
ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND state IN ('pending', 'retrying', 'running')
        DO NOTHING

-- name: push_wake
-- The end of a push's statement, after its ins CTE: one NOTIFY per queue that got a job, and
-- the ids inserted only when some were not (NULL when all %(n)s were).
, woken AS (
    SELECT pg_notify('{prefix}events', json_build_object('t', 'queue.pushed', 'q', q.queue)::text)
    FROM (SELECT DISTINCT queue FROM ins) AS q
    WHERE %(notify)s
)
SELECT CASE WHEN count(*) < %(n)s THEN coalesce(array_agg(ins.id), '{}') END AS ids,
       (SELECT count(*) FROM woken) AS notified
FROM ins;
