-- name: job_insert_many
-- Insert a batch (arrays of equal length, rows sorted by unique key so concurrent pushers lock
-- keys in one order), skip live unique keys, and wake each queue that got a job, in one
-- statement. The NOTIFY is delivered only if the surrounding transaction commits.
-- A job without a partition key pushed to a queue with per-key limits is stored with the key
-- '' (read back as None), so that the claim finds it through the keyed index; elsewhere it
-- stays NULL and stays out of that index.
WITH ins AS (
    INSERT INTO {prefix}jobs AS j
        (id, queue, func, kwargs, limits, meta, priority, max_attempts, scheduled_at, unique_key,
         partition_key)
    SELECT u.id, u.queue, u.func, u.kwargs, u.limits, u.meta, u.priority, u.max_attempts,
           coalesce(u.scheduled_at, now()), u.unique_key,
           coalesce(u.partition_key, CASE WHEN kq.name IS NOT NULL THEN '' END)
    FROM unnest(
        %(ids)s::uuid[], %(queues)s::text[], %(funcs)s::text[], %(kwargs)s::jsonb[],
        %(limits)s::jsonb[], %(metas)s::jsonb[], %(priorities)s::int[], %(max_attempts)s::int[],
        %(scheduled_ats)s::timestamptz[], %(unique_keys)s::text[], %(partition_keys)s::text[]
    ) WITH ORDINALITY AS u(id, queue, func, kwargs, limits, meta, priority, max_attempts,
                          scheduled_at, unique_key, partition_key, ord)
    LEFT JOIN {prefix}queues AS kq
        ON kq.name = u.queue
       AND (kq.partition_concurrency IS NOT NULL OR kq.partition_rate_limit IS NOT NULL)
    ORDER BY u.ord
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND state IN ('pending', 'retrying', 'running')
        DO NOTHING
    RETURNING j.id, j.queue
), woken AS (
    SELECT pg_notify('{prefix}events', json_build_object('t', 'queue.pushed', 'q', q.queue)::text)
    FROM (SELECT DISTINCT queue FROM ins) AS q
    WHERE %(notify)s
)
SELECT array_agg(ins.id) AS ids, (SELECT count(*) FROM woken) AS notified FROM ins;

-- name: job_copy
COPY {prefix}jobs (id, queue, func, kwargs, limits, meta, priority, max_attempts, scheduled_at,
    partition_key)
FROM STDIN;

-- name: job_copy_prepare
-- What a COPY batch needs to know first: database time for jobs without a scheduled_at, and
-- which of its queues have per-key limits (their keyless jobs are stored with the key '').
SELECT now() AS now,
       coalesce(array_agg(q.name), '{}') AS keyed_queues
FROM {prefix}queues AS q
WHERE q.name = ANY(%(queues)s::text[])
  AND (q.partition_concurrency IS NOT NULL OR q.partition_rate_limit IS NOT NULL);

-- name: job_now
SELECT now() AS now;

-- name: job_live_by_unique_keys
SELECT id, unique_key FROM {prefix}jobs
WHERE unique_key = ANY(%(keys)s::text[]) AND state IN ('pending', 'retrying', 'running');

-- name: notify
SELECT pg_notify('{prefix}events', %(payload)s::text);

-- name: job_get
SELECT * FROM {prefix}jobs WHERE id = %(id)s;

-- name: job_get_many
SELECT * FROM {prefix}jobs WHERE id = ANY(%(ids)s::uuid[]);

-- name: job_states
SELECT id, state FROM {prefix}jobs WHERE id = ANY(%(ids)s::uuid[]);

-- name: job_active_count
-- Jobs that are due (waiting and scheduled by now) or running, in the given queues (all when
-- NULL): zero means a worker serving those queues has nothing to do (chancy.testing).
SELECT count(*) AS n FROM {prefix}jobs
WHERE state IN ('pending', 'retrying', 'running')
  AND (state = 'running' OR (scheduled_at <= now() AND attempts < max_attempts))
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]));

-- name: job_find_by_func
-- The newest jobs of one function (optionally of one queue), for assertions in tests.
SELECT * FROM {prefix}jobs
WHERE func = %(func)s AND (%(queue)s::text IS NULL OR queue = %(queue)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: job_fetch
-- Claim up to %(limit)s waiting jobs of one queue, highest priority first and oldest first
-- within a priority, skipping rows other claimers hold. Each claimed row gets a fresh
-- claim_id: every later write about the job must carry it (fencing). A paused queue yields
-- nothing, whatever the worker believes: a pause is effective when pause_queue() returns.
WITH picked AS (
    SELECT id FROM {prefix}jobs
    WHERE queue = %(queue)s
      AND state IN ('pending', 'retrying')
      AND scheduled_at <= now()
      AND attempts < max_attempts
      AND NOT EXISTS (
          SELECT 1 FROM {prefix}queues AS q WHERE q.name = %(queue)s AND q.state = 'paused'
      )
    ORDER BY priority DESC, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {prefix}jobs AS j
SET state = 'running',
    started_at = now(),
    taken_by = %(worker_id)s,
    claim_id = gen_random_uuid()
-- Look the picked rows up by primary key whatever the statistics say: with stale statistics
-- (right after a bulk push or a vacuum of an emptied table) a join here was planned as a full
-- scan of the table.
WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING j.*;

-- name: job_complete_many
-- Write a batch of outcomes. Only rows still running under the claim that produced the
-- outcome change; a late write from a worker that lost the job matches nothing. NULL in
-- errors, meta or delay keeps the stored value. Finished ids are announced (job.finished),
-- in chunks that stay below NOTIFY's payload limit.
WITH u AS (
    SELECT * FROM unnest(
        %(ids)s::uuid[], %(claim_ids)s::uuid[], %(states)s::text[], %(attempts)s::int[],
        %(errors)s::jsonb[], %(metas)s::jsonb[], %(results)s::jsonb[], %(delays)s::float8[]
    ) AS u(id, claim_id, state, attempts, errors, meta, result, delay)
), done AS (
    UPDATE {prefix}jobs AS j
    SET state = u.state,
        attempts = u.attempts,
        errors = coalesce(u.errors, j.errors),
        meta = coalesce(u.meta, j.meta),
        result = u.result,
        completed_at = CASE WHEN u.state IN ('succeeded', 'failed') THEN now() END,
        scheduled_at = CASE
            WHEN u.delay IS NULL THEN j.scheduled_at
            ELSE now() + make_interval(secs => u.delay)
        END,
        claim_id = NULL
    FROM u
    WHERE j.id = u.id AND j.state = 'running' AND j.claim_id = u.claim_id
    RETURNING j.id, j.state
), announced AS (
    SELECT pg_notify(
        '{prefix}events',
        json_build_object('t', 'job.finished', 'ids', array_agg(c.id))::text
    )
    FROM (
        SELECT id, (row_number() OVER () - 1) / 150 AS chunk
        FROM done WHERE state IN ('succeeded', 'failed')
    ) AS c
    WHERE %(notify)s
    GROUP BY c.chunk
)
SELECT coalesce(array_agg(done.id), '{}') AS ids, (SELECT count(*) FROM announced) AS notified
FROM done;

-- name: job_release_many
-- Give running jobs back at graceful shutdown: pending again, no attempt used, fenced.
UPDATE {prefix}jobs AS j
SET state = 'pending', started_at = NULL, taken_by = NULL, claim_id = NULL
FROM unnest(%(ids)s::uuid[], %(claim_ids)s::uuid[]) AS u(id, claim_id)
WHERE j.id = u.id AND j.state = 'running' AND j.claim_id = u.claim_id
RETURNING j.id;

-- name: job_cancel
-- The terminal write of a cancellation, in one statement, for a job that has not finished.
-- The worker running it (if any) is told through job.cancelled and only interrupts it.
WITH cancelled AS (
    UPDATE {prefix}jobs
    SET state = 'failed',
        completed_at = now(),
        claim_id = NULL,
        errors = errors || jsonb_build_array(jsonb_build_object(
            'attempt', attempts,
            'traceback', 'Cancelled: the job was cancelled by request (cancel_job).'
        )),
        meta = meta || '{"cancelled": true}'::jsonb
    WHERE id = %(id)s AND state IN ('pending', 'retrying', 'running')
    RETURNING id, queue
), told AS (
    SELECT pg_notify('{prefix}events', json_build_object(
        't', 'job.cancelled', 'j', c.id, 'q', c.queue)::text)
    FROM cancelled AS c WHERE %(notify)s
), finished AS (
    SELECT pg_notify('{prefix}events', json_build_object(
        't', 'job.finished', 'ids', json_build_array(c.id))::text)
    FROM cancelled AS c WHERE %(notify)s
)
SELECT c.id, (SELECT count(*) FROM told) + (SELECT count(*) FROM finished) AS notified
FROM cancelled AS c;

-- name: job_retry_many
-- Put finished jobs back to retrying with attempts reset (errors kept), in id order. A job
-- whose unique key is live again in another job is skipped and reported, not raised.
WITH candidates AS (
    SELECT j.id, j.queue, j.unique_key FROM {prefix}jobs AS j
    WHERE j.id = ANY(%(ids)s::uuid[]) AND j.state IN ('succeeded', 'failed')
    ORDER BY j.id
    FOR UPDATE
), blocked AS (
    SELECT c.id FROM candidates AS c
    WHERE c.unique_key IS NOT NULL AND EXISTS (
        SELECT 1 FROM {prefix}jobs AS o
        WHERE o.unique_key = c.unique_key AND o.id <> c.id
          AND o.state IN ('pending', 'retrying', 'running')
    )
), retried AS (
    UPDATE {prefix}jobs AS j
    SET state = 'retrying', attempts = 0, completed_at = NULL, started_at = NULL,
        taken_by = NULL, claim_id = NULL, scheduled_at = now(), result = NULL,
        meta = j.meta - 'cancelled'
    FROM candidates AS c
    WHERE j.id = c.id AND c.id NOT IN (SELECT id FROM blocked)
    RETURNING j.id, j.queue
), woken AS (
    SELECT pg_notify('{prefix}events', json_build_object('t', 'queue.pushed', 'q', q.queue)::text)
    FROM (SELECT DISTINCT queue FROM retried) AS q WHERE %(notify)s
)
SELECT
    (SELECT coalesce(array_agg(id), '{}') FROM retried) AS retried,
    (SELECT coalesce(array_agg(id), '{}') FROM blocked) AS blocked,
    (SELECT count(*) FROM woken) AS notified;

-- name: job_purge_many
WITH purged AS (
    DELETE FROM {prefix}jobs WHERE id = ANY(%(ids)s::uuid[]) RETURNING id
), finished AS (
    SELECT pg_notify('{prefix}events', json_build_object(
        't', 'job.finished', 'ids', array_agg(p.id))::text)
    FROM purged AS p WHERE %(notify)s HAVING count(*) > 0
)
SELECT coalesce(array_agg(id), '{}') AS ids, (SELECT count(*) FROM finished) AS notified
FROM purged;
