-- Named queries of the benchmark suite (loaded with chancy.store.loader, {prefix} filled in).
-- The reference workload (W4) runs on a plain table of its own: the least a job queue must
-- do per job on this server, to compare chancy against in the same run.

-- name: ref_create
CREATE TABLE {prefix}ref_jobs (
    id uuid PRIMARY KEY,
    queue text NOT NULL,
    func text NOT NULL,
    kwargs jsonb NOT NULL DEFAULT '{}'::jsonb,
    state text NOT NULL DEFAULT 'pending',
    pushed_at double precision
);
CREATE INDEX {prefix}ref_jobs_claim ON {prefix}ref_jobs (queue, id) WHERE state = 'pending';

-- name: ref_drop
DROP TABLE IF EXISTS {prefix}ref_jobs;

-- name: ref_truncate
TRUNCATE {prefix}ref_jobs;

-- name: ref_copy
COPY {prefix}ref_jobs (id, queue, func, kwargs) FROM STDIN;

-- name: ref_fill
-- Queue %(n)s no-op jobs for the reference drain.
INSERT INTO {prefix}ref_jobs (id, queue, func)
SELECT gen_random_uuid(), %(queue)s, 'bench.jobs.noop' FROM generate_series(1, %(n)s);

-- name: ref_analyze
ANALYZE {prefix}ref_jobs;

-- name: ref_claim
WITH picked AS (
    SELECT id FROM {prefix}ref_jobs
    WHERE queue = %(queue)s AND state = 'pending'
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {prefix}ref_jobs AS j SET state = 'running'
FROM picked WHERE j.id = picked.id
RETURNING j.id, j.func, j.kwargs, j.pushed_at;

-- name: ref_done
UPDATE {prefix}ref_jobs SET state = 'done' WHERE id = ANY(%(ids)s::uuid[]);

-- name: ref_push_notify
-- One trickle push of the reference latency workload: insert and wake the consumer.
WITH ins AS (
    INSERT INTO {prefix}ref_jobs (id, queue, func, pushed_at)
    VALUES (gen_random_uuid(), %(queue)s, 'bench.jobs.noop', %(t)s)
    RETURNING id
)
SELECT pg_notify('{prefix}ref', '') FROM ins;

-- name: ref_listen
LISTEN {prefix}ref;

-- name: analyze_jobs
ANALYZE {prefix}jobs;

-- name: jobs_no_autovacuum
-- Statistics stay as TRUNCATE leaves them (never analyzed) unless a workload analyzes on
-- purpose: an autovacuum ANALYZE at a random moment of a drain changes chancy's plans (see
-- the report's notes), which would make repetitions incomparable.
ALTER TABLE {prefix}jobs SET (autovacuum_enabled = false);

-- name: vacuum_analyze_jobs
VACUUM ANALYZE {prefix}jobs;

-- name: jobs_unfinished
-- Whether any job of the benchmark's prefix is still waiting or running (drain finished?).
SELECT EXISTS (
    SELECT 1 FROM {prefix}jobs WHERE state IN ('pending', 'retrying', 'running')
) AS busy;

-- name: jobs_drain_window
-- The drain as the database saw it: first claim to last completion, and how many finished.
SELECT count(*) AS n,
       extract(epoch FROM min(started_at)) AS first_start,
       extract(epoch FROM max(completed_at)) AS last_done
FROM {prefix}jobs WHERE state = 'succeeded' AND queue = %(queue)s;

-- name: jobs_completion_times
-- Completions per instant, for the throughput-over-time plot.
SELECT extract(epoch FROM completed_at) AS t, count(*) AS n
FROM {prefix}jobs
WHERE queue = %(queue)s AND state = 'succeeded'
GROUP BY completed_at ORDER BY completed_at;

-- name: jobs_truncate
-- Between repetitions. TRUNCATE rather than DELETE + VACUUM: a vacuum of an emptied table
-- records zero rows while its pages stay, and the planner then estimates one row for any
-- later backlog until autovacuum analyzes again (see the report's notes).
TRUNCATE {prefix}jobs;

-- name: jobs_finish_running
-- Finish the jobs the claim-latency probe took, outside the timed part.
UPDATE {prefix}jobs
SET state = 'succeeded', attempts = attempts + 1, completed_at = now(), claim_id = NULL
WHERE state = 'running' AND taken_by = %(worker_id)s;

-- name: scale_load_finished
-- W5: %(n)s finished jobs, with time-ordered ids (like chancy's) from %(base)s onwards.
INSERT INTO {prefix}jobs (
    id, queue, func, state, attempts, max_attempts, taken_by, created_at, started_at,
    completed_at, scheduled_at
)
SELECT
    (lpad(to_hex(%(ms)s::bigint + g / 1000), 12, '0') || '7000' || '8'
        || lpad(to_hex(%(base)s::bigint + g), 15, '0'))::uuid,
    %(queue)s, 'bench.jobs.noop', 'succeeded', 1, 1, 'bench-loader',
    ts, ts, ts, ts
FROM generate_series(1, %(n)s) AS g,
     LATERAL (SELECT to_timestamp((%(ms)s::bigint + g / 1000) / 1000.0) AS ts) AS t;

-- name: scale_load_waiting
-- W5: %(n)s waiting jobs, ids after every finished one.
INSERT INTO {prefix}jobs (id, queue, func, state, created_at, scheduled_at)
SELECT
    (lpad(to_hex(%(ms)s::bigint + g / 1000), 12, '0') || '7000' || '8'
        || lpad(to_hex(%(base)s::bigint + g), 15, '0'))::uuid,
    %(queue)s, 'bench.jobs.noop', 'pending', ts, ts
FROM generate_series(1, %(n)s) AS g,
     LATERAL (SELECT to_timestamp((%(ms)s::bigint + g / 1000) / 1000.0) AS ts) AS t;

-- name: scale_secondary_indexes
-- The secondary indexes of the jobs table, to drop before a bulk load and rebuild after.
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index AS i
WHERE i.indrelid = '{prefix}jobs'::regclass AND NOT i.indisprimary;

-- name: scale_table_size
SELECT pg_total_relation_size('{prefix}jobs') AS total,
       pg_relation_size('{prefix}jobs') AS heap,
       (SELECT count(*) FROM {prefix}jobs) AS rows;

-- name: prefix_tables
SELECT relname FROM pg_class
WHERE relkind IN ('r', 'u', 'p') AND relname LIKE %(pattern)s;

-- name: server_info
SELECT version() AS version,
       current_setting('shared_buffers') AS shared_buffers,
       current_setting('synchronous_commit') AS synchronous_commit,
       current_setting('max_connections') AS max_connections;

-- name: jobs_drained_since
-- W5: jobs that finished after %(since)s (the drain), found through the finished-jobs index.
SELECT count(*) AS n,
       extract(epoch FROM min(started_at)) AS first_start,
       extract(epoch FROM max(completed_at)) AS last_done
FROM {prefix}jobs
WHERE state IN ('succeeded', 'failed') AND completed_at >= %(since)s;

-- name: db_now
SELECT now() AS now;

-- name: ref_pending
SELECT count(*) AS n FROM {prefix}ref_jobs WHERE state <> 'done';
