-- name: queue_declare
-- Insert a queue unless it exists; return the stored row either way. A new queue with per-key
-- limits, fairness or order gives the keyless jobs already waiting in it the key '' (see
-- job_insert_many).
WITH ins AS (
    INSERT INTO {prefix}queues (name, state, concurrency, tags, executor, executor_options,
        polling_interval, rate_limit, rate_limit_window, resume_at, eager_polling,
        global_concurrency, partition_concurrency, partition_rate_limit,
        partition_rate_limit_window, fairness, partition_weights, partition_ordered,
        partition_on_failure, default_deadline)
    VALUES (%(name)s, %(state)s, %(concurrency)s, %(tags)s, %(executor)s, %(executor_options)s,
        %(polling_interval)s, %(rate_limit)s, %(rate_limit_window)s, %(resume_at)s,
        %(eager_polling)s, %(global_concurrency)s, %(partition_concurrency)s,
        %(partition_rate_limit)s, %(partition_rate_limit_window)s, %(fairness)s,
        %(partition_weights)s::jsonb, %(partition_ordered)s, %(partition_on_failure)s,
        %(default_deadline)s)
    ON CONFLICT (name) DO NOTHING
    RETURNING *
), keyed AS (
    UPDATE {prefix}jobs SET partition_key = ''
    WHERE queue = %(name)s AND state IN ('pending', 'retrying') AND partition_key IS NULL
      AND EXISTS (
          SELECT 1 FROM ins
          WHERE ins.partition_concurrency IS NOT NULL OR ins.partition_rate_limit IS NOT NULL
             OR ins.fairness OR ins.partition_ordered
      )
)
SELECT * FROM ins
UNION ALL
SELECT * FROM {prefix}queues WHERE name = %(name)s AND NOT EXISTS (SELECT 1 FROM ins);

-- name: queue_upsert
-- Insert or overwrite a queue. With per-key limits, fairness or order, keyless jobs already
-- waiting in it get the key '' (see job_insert_many).
WITH keyed AS (
    UPDATE {prefix}jobs SET partition_key = ''
    WHERE queue = %(name)s AND state IN ('pending', 'retrying') AND partition_key IS NULL
      AND (%(partition_concurrency)s::integer IS NOT NULL
           OR %(partition_rate_limit)s::integer IS NOT NULL
           OR %(fairness)s::boolean
           OR %(partition_ordered)s::boolean)
), unfair AS (
    -- A queue that stops being fair forgets its keys' passes.
    DELETE FROM {prefix}fair_keys WHERE queue = %(name)s AND NOT %(fairness)s::boolean
)
INSERT INTO {prefix}queues (name, state, concurrency, tags, executor, executor_options,
    polling_interval, rate_limit, rate_limit_window, resume_at, eager_polling,
    global_concurrency, partition_concurrency, partition_rate_limit, partition_rate_limit_window,
    fairness, partition_weights, partition_ordered, partition_on_failure, default_deadline)
VALUES (%(name)s, %(state)s, %(concurrency)s, %(tags)s, %(executor)s, %(executor_options)s,
    %(polling_interval)s, %(rate_limit)s, %(rate_limit_window)s, %(resume_at)s,
    %(eager_polling)s, %(global_concurrency)s, %(partition_concurrency)s,
    %(partition_rate_limit)s, %(partition_rate_limit_window)s, %(fairness)s,
    %(partition_weights)s::jsonb, %(partition_ordered)s, %(partition_on_failure)s,
        %(default_deadline)s)
ON CONFLICT (name) DO UPDATE SET
    state = EXCLUDED.state,
    concurrency = EXCLUDED.concurrency,
    tags = EXCLUDED.tags,
    executor = EXCLUDED.executor,
    executor_options = EXCLUDED.executor_options,
    polling_interval = EXCLUDED.polling_interval,
    rate_limit = EXCLUDED.rate_limit,
    rate_limit_window = EXCLUDED.rate_limit_window,
    resume_at = EXCLUDED.resume_at,
    eager_polling = EXCLUDED.eager_polling,
    global_concurrency = EXCLUDED.global_concurrency,
    partition_concurrency = EXCLUDED.partition_concurrency,
    partition_rate_limit = EXCLUDED.partition_rate_limit,
    partition_rate_limit_window = EXCLUDED.partition_rate_limit_window,
    fairness = EXCLUDED.fairness,
    partition_weights = EXCLUDED.partition_weights,
    partition_ordered = EXCLUDED.partition_ordered,
    partition_on_failure = EXCLUDED.partition_on_failure,
    default_deadline = EXCLUDED.default_deadline
RETURNING *;

-- name: queue_get
SELECT * FROM {prefix}queues WHERE name = %(name)s;

-- name: queue_get_all
SELECT * FROM {prefix}queues ORDER BY name;

-- name: queue_delete
-- Delete a queue, the starts its rate limits counted and its fair-share passes.
WITH gone AS (
    DELETE FROM {prefix}queues WHERE name = %(name)s RETURNING name
), forgotten AS (
    DELETE FROM {prefix}limit_starts WHERE queue IN (SELECT name FROM gone)
), unfair AS (
    DELETE FROM {prefix}fair_keys WHERE queue IN (SELECT name FROM gone)
)
SELECT name FROM gone;

-- name: queue_purge_jobs
DELETE FROM {prefix}jobs WHERE queue = %(name)s;

-- name: queue_set_state
UPDATE {prefix}queues
SET state = %(state)s,
    resume_at = CASE
        WHEN %(resume_in)s::float8 IS NOT NULL THEN now() + make_interval(secs => %(resume_in)s)
        ELSE %(resume_at)s::timestamptz
    END
WHERE name = %(name)s
RETURNING *;

-- name: queue_resume_due
-- Resume paused queues whose resume_at has passed (any worker may run this; it is idempotent).
UPDATE {prefix}queues SET state = 'active', resume_at = NULL
WHERE state = 'paused' AND resume_at IS NOT NULL AND resume_at <= now()
RETURNING name;
