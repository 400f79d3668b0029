-- Planning rule for this file (tests/store/test_plans.py checks it under misleading
-- statistics): rows are found by primary key or through a partial index with an index
-- condition (a claim updates the rows it has just picked and locked by their row versions,
-- ctid), never by a join the planner may turn into a scan. Lists of ids are written
-- `id = ANY(ARRAY(SELECT unnest(...)))`: the planner cannot see the list's length, so it
-- always takes the primary key. A state condition on rows found by id is written
-- `(state = ...) IS TRUE`, which no partial index predicate matches, so the planner never
-- answers it by reading a whole partial index (such as jobs_running, full of dead entries
-- after a busy hour). On a tiny table the cheapest plan of a lookup by id reads the whole
-- table; a statement whose plan does that there is marked `-- plan: per run` (never
-- prepared, so no generic plan made while the table was tiny serves it once it is big;
-- chancy/store/loader.py).

-- name: job_insert_many
-- Insert a batch (arrays of equal length, rows sorted by unique key so concurrent pushers lock
-- keys in one order), skip live unique keys, and wake each queue that got a job, in one
-- statement. The NOTIFY is delivered only if the surrounding transaction commits.
-- A job without a partition key pushed to a queue with per-key limits, fairness or order is
-- stored with the key
-- '' (read back as None), so that the claim finds it through the keyed index; elsewhere it
-- stays NULL and stays out of that index. A job without a deadline pushed to a queue with a
-- default_deadline gets one: that many seconds after it is due. ids lists the jobs inserted
-- only when some were not (a live unique key): NULL when all %(n)s were, so the usual batch
-- does not send back, nor the client decode, an id per job.
WITH ins AS (
    INSERT INTO {prefix}jobs AS j
        (id, queue, func, kwargs, limits, meta, priority, max_attempts, scheduled_at, unique_key,
         partition_key, deadline)
    SELECT u.id, u.queue, u.func, u.kwargs, u.limits, u.meta, u.priority, u.max_attempts,
           coalesce(u.scheduled_at, now()), u.unique_key,
           coalesce(u.partition_key, CASE WHEN kq.name IS NOT NULL THEN '' END),
           coalesce(u.deadline, coalesce(u.scheduled_at, now())
               + make_interval(secs => dq.default_deadline))
    FROM unnest(
        %(ids)s::uuid[], %(queues)s::text[], %(funcs)s::text[], %(kwargs)s::jsonb[],
        %(limits)s::jsonb[], %(metas)s::jsonb[], %(priorities)s::int[], %(max_attempts)s::int[],
        %(scheduled_ats)s::timestamptz[], %(unique_keys)s::text[], %(partition_keys)s::text[],
        %(deadlines)s::timestamptz[]
    ) WITH ORDINALITY AS u(id, queue, func, kwargs, limits, meta, priority, max_attempts,
                          scheduled_at, unique_key, partition_key, deadline, ord)
    {push_queue_joins}
    {push_skip_live_keys}
    RETURNING j.id, j.queue
)
{push_wake}

-- name: job_insert_many_lean
-- job_insert_many for a batch whose jobs are all due now, with no deadline of their own, no
-- limits, meta or partition key (chancy.store.encode.insert_is_lean), the usual push: those
-- five arrays are not sent, nor parsed by the server (two JSON values, two timestamps and a
-- text per job), and the columns take their defaults, or the queue's key '' and default
-- deadline as job_insert_many gives them. A batch of 1,000 jobs with unique keys took 8.5
-- instead of 9.9 us per job here.
WITH ins AS (
    {push_lean_rows}
    {push_skip_live_keys}
    RETURNING j.id, j.queue
)
{push_wake}

-- name: job_insert_many_plain
-- job_insert_many_lean without its ON CONFLICT (which makes every row a speculative
-- insertion: checked against the unique index first, confirmed after, one more WAL record
-- per row). For a batch without unique keys (%(unique_keys)s NULL), which can never
-- conflict: a batch of 1,000 took 4.1 instead of 4.7 ms to execute here. And for the first
-- try of a push_many batch with unique keys, on the bet that they are new (6.5 instead of
-- 7.8 ms per 1,000 with the commit): a key that is live fails the statement with a unique
-- violation on the unique_key index, and the batch is written again in a new transaction
-- with job_insert_many_lean (chancy/push.py, FRESH_KEYS_MIN).
WITH ins AS (
    {push_lean_rows}
    RETURNING j.id, j.queue
)
{push_wake}

-- name: job_copy
COPY {prefix}jobs (id, queue, func, kwargs, limits, meta, priority, max_attempts, scheduled_at,
    partition_key, deadline)
FROM STDIN;

-- name: job_copy_lean
-- job_copy for a batch whose jobs all leave the other columns at their defaults (due now, no
-- deadline, no limits, meta or partition key, and no queue that fills one in:
-- JobSpecs._copy), the usual push_many. Every column left out is a value the server does
-- not parse for each row (a timestamp, two JSON values, a NULL): COPY of 20,000 rows took
-- 3.37 instead of 3.77 us per row here. scheduled_at takes its default, now(), which is the
-- batch's transaction time, as job_copy_prepare's now is.
COPY {prefix}jobs (id, queue, func, kwargs, priority, max_attempts) FROM STDIN;

-- name: job_copy_unique
-- job_copy with unique keys: the first try of a push_many batch with unique keys, on the bet
-- that they are new (as job_insert_many_plain; chancy/push.py, FRESH_KEYS_MIN). A key that
-- is live fails the COPY with a unique violation on the unique_key index, and the batch is
-- written again in a new transaction with ON CONFLICT (job_insert_many_lean, or
-- job_insert_many for a batch that sets other columns), which skips live keys.
COPY {prefix}jobs (id, queue, func, kwargs, limits, meta, priority, max_attempts, scheduled_at,
    partition_key, deadline, unique_key)
FROM STDIN;

-- name: job_copy_lean_unique
-- job_copy_lean with unique keys (see job_copy_unique).
COPY {prefix}jobs (id, queue, func, kwargs, priority, max_attempts, unique_key) FROM STDIN;

-- name: job_copy_prepare
-- What a COPY batch needs to know first: database time for jobs without a scheduled_at, and
-- which of its queues have per-key limits, fairness or order (their keyless jobs are stored
-- with the key ''), and the default deadlines of its queues that have one.
SELECT now() AS now,
       coalesce(array_agg(q.name) FILTER (
           WHERE q.partition_concurrency IS NOT NULL OR q.partition_rate_limit IS NOT NULL
              OR q.fairness OR q.partition_ordered
       ), '{}') AS keyed_queues,
       coalesce(jsonb_object_agg(q.name, q.default_deadline) FILTER (
           WHERE q.default_deadline IS NOT NULL
       ), '{}') AS default_deadlines
FROM {prefix}queues AS q
WHERE q.name = ANY(%(queues)s::text[]);

-- name: job_live_by_unique_keys
SELECT id, unique_key FROM {prefix}jobs
WHERE unique_key = ANY(ARRAY(SELECT unnest(%(keys)s::text[])))
  AND state IN ('pending', 'retrying', 'running');

-- name: notify
SELECT pg_notify('{prefix}events', %(payload)s::text);

-- name: notify_many
-- Several events in one statement, in order.
SELECT count(pg_notify('{prefix}events', p.payload)) AS sent
FROM unnest(%(payloads)s::text[]) WITH ORDINALITY AS p(payload, n);

-- name: job_get
SELECT * FROM {prefix}jobs WHERE id = %(id)s;

-- name: job_get_many
-- plan: per run
SELECT * FROM {prefix}jobs WHERE id = ANY(ARRAY(SELECT unnest(%(ids)s::uuid[])));

-- name: job_states
-- plan: per run
SELECT id, state FROM {prefix}jobs WHERE id = ANY(ARRAY(SELECT unnest(%(ids)s::uuid[])));

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

-- name: claim_settings
-- Run before a limited claim, in its transaction (job_fetch's function carries the same
-- setting as a SET clause, see migration v0017): the claim reads a queue's waiting jobs in claim
-- order from its index and stops at the LIMIT. On a big table that was never analysed the
-- planner falls back to default selectivities, believes the backlog holds a handful of rows,
-- and prefers to fetch all of them with a bitmap scan and sort them; this setting (for this
-- transaction only) takes that plan away, whatever the statistics say, and leaves the ordered
-- index scan (tests/store/test_plans.py). Sorts of small sets (the keyed claim's per-key
-- aggregates) stay allowed. Sequential scans are off too (a last resort, taken only where no
-- index serves): on a table that looks small, or under a plan made while it was, the claim's
-- UPDATE would otherwise read the whole table to find the picked ids (migration v0018).
SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true);

-- name: tx_begin
-- A claim's transaction, opened in the same pipeline batch as the claim and committed in a
-- second once its rows are read (chancy.store.runner.run_pipelined_transaction).
BEGIN;

-- name: tx_commit
COMMIT;

-- name: job_fetch
-- Claim up to %(limit)s waiting jobs of one queue for %(worker_id)s: one statement, in
-- autocommit. The claim itself is the function {prefix}claim_jobs (migrations v0017, v0018,
-- v0022 and v0023), which runs under its planner settings (SET enable_bitmapscan = off,
-- enable_seqscan = off), updates the rows it picked by their versions (ctid) and says why; a
-- picked job whose deadline has passed comes back failed
-- (meta.expired), to be told apart. An empty JSON object or list comes back as NULL, which
-- the worker reads as that empty value (chancy.store.claims.claimed_row_maker): most jobs
-- have no kwargs, limits, meta or errors, and each value spared is a JSON parse per job.
-- The claim commits synchronously, like every write: a claim that a crash of PostgreSQL
-- could undo (synchronous_commit off saved 0.2-0.3 ms of every claim here) leaves its worker
-- holding jobs that are pending again, and a worker that claims a job it still holds runs
-- it twice in one process and loses an outcome (the chaos test found seven such jobs re-run
-- 24 s later); tests/store/test_claim_function.py holds the setting.
SELECT id, queue, func, nullif(kwargs, '{}') AS kwargs, nullif(limits, '[]') AS limits,
       nullif(meta, '{}') AS meta, state, priority, attempts, max_attempts, taken_by,
       created_at, started_at, completed_at, scheduled_at, unique_key,
       nullif(errors, '[]') AS errors, claim_id, result, recoveries, partition_key, progress,
       deadline
FROM {prefix}claim_jobs(%(queue)s, %(limit)s, %(worker_id)s);

-- name: session_utc
-- Run on each new pool connection (Db.on_connect) of an app whose connections keep session
-- state (not behind a transaction pooler): a server whose TimeZone is UTC under another name
-- (Debian's default is 'Etc/UTC') is told 'UTC', the same zone, which psycopg turns into
-- datetime.timezone.utc instead of a ZoneInfo. Loading a claimed job's row (three
-- timestamps) then took 1.5 instead of 3.0 us here. Other zones are left as they are.
SELECT set_config('TimeZone', 'UTC', false) AS timezone
WHERE current_setting('TimeZone') IN (
    'Etc/UTC', 'Etc/UCT', 'UCT', 'Etc/Universal', 'Universal', 'Etc/Zulu', 'Zulu'
);

-- name: claim_warmup
-- Run once on each new connection of a worker's pool (Db.warmups), before it serves a claim:
-- the first call of {prefix}claim_jobs in a server session loads PL/pgSQL, compiles the
-- function and plans its query, about 2-3 ms that would otherwise land on the first job a
-- connection claims. Claims nothing (limit 0, no queue named '').
SELECT count(*) AS n FROM {prefix}claim_jobs('', 0, '');

-- name: job_claim_session_busy
-- Whether the server session %(pid)s still runs a statement or holds a transaction. After a
-- claim whose connection was lost, that session's claim may still commit until it does not
-- (a session that ended, or went idle, has committed or rolled back).
SELECT EXISTS (
    SELECT 1 FROM pg_stat_activity WHERE pid = %(pid)s AND state IS DISTINCT FROM 'idle'
) AS busy;

-- name: job_give_back_unseen
-- After a claim whose connection was lost, once its session is no longer busy: jobs of
-- %(queue)s running under %(worker_id)s that the worker does not hold (%(known)s: its ledger
-- and its unwritten outcomes) were claimed by that statement and never seen. They go back
-- to pending, no attempt used. Through the running jobs' index (taken_by): this worker's
-- running jobs only.
UPDATE {prefix}jobs
SET state = 'pending', started_at = NULL, taken_by = NULL, claim_id = NULL
WHERE taken_by = %(worker_id)s AND state = 'running' AND queue = %(queue)s
  AND NOT (id = ANY(%(known)s::uuid[]))
RETURNING id;

-- name: complete_settings
-- Run before a write that joins a batch to the rows it updates (job_progress_many,
-- job_release_many), in its transaction (Store.linear_join). When the statistics make both
-- look like a handful of rows (a table never analysed, or analysed before the jobs were
-- pushed) the planner joins them with a nested loop that reads the whole batch again for
-- every row: a batch of 1,000 outcomes took 0.66 s (a million comparisons) where a hash join
-- takes milliseconds. With nested loops off for this transaction the join is a hash or merge
-- join whatever the statistics say (tests/store/test_plans.py). The completion write carries
-- the same setting in its function (complete_jobs, migration v0020).
SELECT set_config('enable_nestloop', 'off', true);

-- name: job_complete_many
-- Write a batch of outcomes, fenced by each run's claim: one statement in autocommit (or in
-- the transaction of plugins' in-transaction hooks). The write is the function
-- {prefix}complete_jobs (migration v0020), which runs under its planner settings (SET
-- enable_nestloop, enable_seqscan, enable_bitmapscan = off) and says why. Returns the ids
-- written. %(progresses)s is NULL unless some of these jobs made a progress report not
-- written yet (chancy.runtime.progress).
SELECT ids, notified FROM {prefix}complete_jobs(
    %(ids)s::uuid[], %(claim_ids)s::uuid[], %(states)s::text[], %(attempts)s::int[],
    %(errors)s::jsonb[], %(metas)s::jsonb[], %(results)s::jsonb[], %(delays)s::float8[],
    %(progresses)s::jsonb[], %(notify)s
);

-- name: job_progress_many
-- plan: per run
-- Write the latest progress report of running jobs (chancy.runtime.progress), each row fenced
-- by the claim of the run that reported: a job recovered elsewhere, cancelled or finished
-- meanwhile keeps what it has. Arrays of equal length, sorted by id; each report is a JSON
-- object {"fraction", "message", "data"} to which `at` is added in database time.
WITH u AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(claim_ids)s::uuid[], %(progresses)s::jsonb[])
        AS u(id, claim_id, progress)
)
UPDATE {prefix}jobs AS j
SET progress = u.progress || jsonb_build_object('at', now())
FROM u
WHERE j.id = ANY(ARRAY(SELECT u.id FROM u))
  AND j.id = u.id AND j.claim_id = u.claim_id AND (j.state = 'running') IS TRUE
RETURNING j.id;

-- name: job_release_many
-- plan: per run
-- Give running jobs back at graceful shutdown: pending again, no attempt used, fenced.
WITH u AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(claim_ids)s::uuid[]) AS u(id, claim_id)
)
UPDATE {prefix}jobs AS j
SET state = 'pending', started_at = NULL, taken_by = NULL, claim_id = NULL
FROM u
WHERE j.id = ANY(ARRAY(SELECT u.id FROM u))
  AND j.id = u.id AND j.claim_id = u.claim_id AND (j.state = 'running') IS TRUE
RETURNING j.id;

-- name: job_cancel
-- The terminal write of a cancellation, in one statement, for a job that has not finished.
-- The worker running it (if any) is told through job.cancelled and only interrupts it. The
-- reason and who asked (either may be NULL) go into meta and into the error entry.
WITH cancelled AS (
    UPDATE {prefix}jobs
    SET state = 'failed',
        completed_at = now(),
        claim_id = NULL,
        errors = errors || jsonb_build_array(jsonb_build_object(
            'attempt', attempts,
            'traceback', 'Cancelled: the job was cancelled by request (cancel_job)'
                || coalesce(' by ' || %(by)s::text, '')
                || coalesce('. Reason: ' || %(reason)s::text, '') || '.'
        )),
        meta = meta || jsonb_strip_nulls(jsonb_build_object(
            'cancelled', true,
            'cancel_reason', %(reason)s::text,
            'cancelled_by', %(by)s::text
        ))
    WHERE id = %(id)s AND (state IN ('pending', 'retrying', 'running')) IS TRUE
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
-- plan: per run
-- Put finished jobs back to retrying with attempts reset (errors kept), in id order. A job
-- whose unique key is live again in another job is skipped and reported, not raised. No step
-- joins the batch to the table: each looks rows up by id, so a big batch costs its size
-- whatever the statistics say (a join may be planned as a nested loop that re-reads the
-- batch for every row, tests/store/test_plans.py).
WITH candidates AS (
    SELECT j.id, j.queue, j.unique_key FROM {prefix}jobs AS j
    WHERE j.id = ANY(ARRAY(SELECT unnest(%(ids)s::uuid[])))
      AND (j.state IN ('succeeded', 'failed')) IS TRUE
    ORDER BY j.id
    FOR UPDATE
), checked AS (
    -- A scalar subquery, looked up per candidate in jobs_unique_key (an EXISTS may become a
    -- join that reads the whole index).
    SELECT c.id, c.unique_key IS NOT NULL AND (
        SELECT true FROM {prefix}jobs AS o
        WHERE o.unique_key = c.unique_key AND o.id <> c.id
          AND o.state IN ('pending', 'retrying', 'running')
        LIMIT 1
    ) IS TRUE AS blocked
    FROM candidates AS c
), retried AS (
    UPDATE {prefix}jobs AS j
    SET state = 'retrying', attempts = 0, completed_at = NULL, started_at = NULL,
        taken_by = NULL, claim_id = NULL, scheduled_at = now(), result = NULL,
        meta = j.meta - 'cancelled' - 'cancel_reason' - 'cancelled_by' - 'expired',
        -- Run again on request: a deadline that expired the job no longer applies.
        deadline = NULL
    WHERE j.id = ANY(ARRAY(SELECT id FROM checked WHERE NOT blocked))
    RETURNING j.id, j.queue
), woken AS (
    SELECT pg_notify('{prefix}events', json_build_object('t', 'queue.pushed', 'q', q.queue)::text)
    FROM (SELECT DISTINCT queue FROM retried) AS q WHERE %(notify)s
)
SELECT
    (SELECT coalesce(array_agg(id), '{}') FROM retried) AS retried,
    (SELECT coalesce(array_agg(id), '{}') FROM checked WHERE blocked) AS blocked,
    (SELECT count(*) FROM woken) AS notified;

-- name: job_purge_many
-- plan: per run
WITH purged AS (
    DELETE FROM {prefix}jobs WHERE id = ANY(ARRAY(SELECT unnest(%(ids)s::uuid[]))) RETURNING id
), finished AS (
    SELECT pg_notify('{prefix}events', json_build_object(
        't', 'job.finished', 'ids', array_agg(p.id))::text)
    FROM purged AS p WHERE %(notify)s HAVING count(*) > 0
)
SELECT coalesce(array_agg(id), '{}') AS ids, (SELECT count(*) FROM finished) AS notified
FROM purged;

-- name: job_claims_lost
-- Of the given running jobs (id, claim), those no longer running under that claim: recovered,
-- cancelled or given back while this worker could not be reached. Looked up by primary key.
SELECT u.id
FROM unnest(%(ids)s::uuid[], %(claim_ids)s::uuid[]) AS u(id, claim_id)
LEFT JOIN LATERAL (
    SELECT j.claim_id FROM {prefix}jobs AS j WHERE j.id = u.id OFFSET 0
) AS j ON true
WHERE j.claim_id IS DISTINCT FROM u.claim_id;

-- name: job_complete_tx
-- A job finishes itself inside the caller's transaction (complete_job_ex): succeeded with its
-- result, fenced by its claim. The claim id stays on the row: it tells the worker's own
-- (later, fenced) completion write that the run settled itself (job_settled_by_claim). The
-- row lock taken here makes Recovery skip the job until the caller's transaction ends; a
-- recovery that got there first cleared the claim, and nothing matches.
WITH done AS (
    UPDATE {prefix}jobs
    SET state = 'succeeded',
        attempts = attempts + 1,
        result = %(result)s::jsonb,
        meta = coalesce(%(meta)s::jsonb, meta),
        completed_at = now()
    WHERE id = %(id)s AND claim_id = %(claim_id)s AND (state = 'running') IS TRUE
    RETURNING id
), finished AS (
    SELECT pg_notify('{prefix}events', json_build_object(
        't', 'job.finished', 'ids', json_build_array(d.id))::text)
    FROM done AS d WHERE %(notify)s
)
SELECT d.id, (SELECT count(*) FROM finished) AS notified FROM done AS d;

-- name: job_settled_by_claim
-- Of these (id, claim) pairs whose fenced completion matched nothing, the jobs that finished
-- themselves under that very claim (job_complete_tx): not lost, only already written.
SELECT u.id
FROM unnest(%(ids)s::uuid[], %(claim_ids)s::uuid[]) AS u(id, claim_id)
JOIN LATERAL (
    SELECT j.claim_id, j.state FROM {prefix}jobs AS j WHERE j.id = u.id OFFSET 0
) AS j ON true
WHERE j.claim_id = u.claim_id AND j.state IN ('succeeded', 'failed');
