-- Named queries of the benchmark suite (loaded with chancy.store.loader, {prefix} filled in).
-- The reference workload (W4) runs on a plain table of its own: the least a job queue must
-- do per job on this server, to compare chancy against in the same run.

-- name: ref_create
-- The jobs table of the reference: what a queue needs to claim in priority order. The claim
-- index mirrors chancy's (queue, priority DESC, id), so no other index gives the claim's order:
-- with an index on (queue, id) alone the planner, given statistics that say every row is
-- pending, walks the primary key instead and passes over every finished row on each claim.
CREATE TABLE {prefix}ref_jobs (
    id uuid PRIMARY KEY,
    queue text NOT NULL,
    func text NOT NULL,
    kwargs jsonb NOT NULL DEFAULT '{}'::jsonb,
    priority integer NOT NULL DEFAULT 0,
    state text NOT NULL DEFAULT 'pending',
    pushed_at double precision
);
CREATE INDEX {prefix}ref_jobs_claim ON {prefix}ref_jobs (queue, priority DESC, id)
WHERE state = 'pending';

-- name: ref_drop
DROP TABLE IF EXISTS {prefix}ref_jobs;

-- name: ref_truncate
TRUNCATE {prefix}ref_jobs;

-- name: ref_copy
-- Binary COPY: rows encoded by the client in PostgreSQL's binary format (bench.reference).
COPY {prefix}ref_jobs (id, queue, func, kwargs) FROM STDIN (FORMAT BINARY);

-- name: ref_copy_text
-- The same columns in COPY's text format, for W4's comparison of the two ways of writing.
COPY {prefix}ref_jobs (id, queue, func, kwargs) FROM STDIN;

-- name: ref_fill
-- Queue %(n)s no-op jobs for the reference drain, with time-ordered ids as chancy makes them
-- (48 bits of milliseconds first), so the claim order is the insertion order.
INSERT INTO {prefix}ref_jobs (id, queue, func)
SELECT (lpad(to_hex((extract(epoch FROM now()) * 1000)::bigint), 12, '0')
        || '7000' || '8' || lpad(to_hex(g), 15, '0'))::uuid,
       %(queue)s, 'bench.jobs.noop'
FROM generate_series(1, %(n)s) AS g;

-- name: ref_analyze
ANALYZE {prefix}ref_jobs;

-- name: ref_claim
-- Claim up to %(limit)s jobs and mark them running. The rows are picked and locked by the
-- subquery and updated by their ctid (a locked row cannot move until this statement ends),
-- so the plan is a TID scan whatever the statistics say, with no join to misestimate.
UPDATE {prefix}ref_jobs AS j SET state = 'running'
WHERE j.ctid = ANY(ARRAY(
    SELECT ctid FROM {prefix}ref_jobs
    WHERE queue = %(queue)s AND state = 'pending'
    ORDER BY priority DESC, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
RETURNING j.id, j.func, j.kwargs, j.pushed_at;

-- name: ref_done
UPDATE {prefix}ref_jobs SET state = 'done' WHERE id = ANY(%(ids)s::uuid[]);

-- name: legacy_create
-- The suite's earlier reference (until this W4 rework), kept to show the difference in the
-- W4 section: random ids, a claim index on (queue, id), a claim joined to its picked ids.
CREATE TABLE {prefix}legacy_jobs (
    id uuid PRIMARY KEY,
    queue text NOT NULL,
    func text NOT NULL,
    kwargs jsonb NOT NULL DEFAULT '{}'::jsonb,
    state text NOT NULL DEFAULT 'pending',
    pushed_at double precision
);
CREATE INDEX {prefix}legacy_jobs_claim ON {prefix}legacy_jobs (queue, id)
WHERE state = 'pending';

-- name: legacy_drop
DROP TABLE IF EXISTS {prefix}legacy_jobs;

-- name: legacy_truncate
TRUNCATE {prefix}legacy_jobs;

-- name: legacy_fill
INSERT INTO {prefix}legacy_jobs (id, queue, func)
SELECT gen_random_uuid(), %(queue)s, 'bench.jobs.noop' FROM generate_series(1, %(n)s);

-- name: legacy_analyze
ANALYZE {prefix}legacy_jobs;

-- name: legacy_claim
WITH picked AS (
    SELECT id FROM {prefix}legacy_jobs
    WHERE queue = %(queue)s AND state = 'pending'
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {prefix}legacy_jobs AS j SET state = 'running'
FROM picked WHERE j.id = picked.id
RETURNING j.id, j.func, j.kwargs, j.pushed_at;

-- name: legacy_done
UPDATE {prefix}legacy_jobs SET state = 'done' WHERE id = ANY(%(ids)s::uuid[]);

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

-- name: jobs_autovacuum_aggressive
-- The `autovacuum` condition: autovacuum and autoanalyze of this one table after every 500
-- changed rows, without cost-based sleeping (per-table storage parameters only; the server's
-- settings are not touched). The launcher still visits the database only once per
-- autovacuum_naptime, so whether a drain is hit is up to the server, as in production.
ALTER TABLE {prefix}jobs SET (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 500,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 500,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_analyze_threshold = 500,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_vacuum_cost_delay = 0
);

-- name: server_autovacuum
-- Whether the server runs the autovacuum daemon at all (per-table settings need it on).
SELECT current_setting('autovacuum')::boolean AS on;

-- name: jobs_changes
-- What autovacuum decides on: dead rows, rows changed since the last analyze and rows
-- inserted since the last vacuum of the jobs table (cumulative statistics, flushed by each
-- backend about once a second).
SELECT coalesce(n_dead_tup, 0) AS dead, coalesce(n_mod_since_analyze, 0) AS changed,
       coalesce(n_ins_since_vacuum, 0) AS inserted
FROM pg_stat_user_tables WHERE relid = '{prefix}jobs'::regclass;

-- name: vacuum_jobs
VACUUM {prefix}jobs;

-- name: jobs_maintenance
-- How often the jobs table was vacuumed and analyzed, by autovacuum and by hand.
SELECT coalesce(autovacuum_count, 0) AS autovacuum, coalesce(autoanalyze_count, 0) AS autoanalyze,
       coalesce(vacuum_count, 0) AS vacuum, coalesce(analyze_count, 0) AS analyze
FROM pg_stat_user_tables WHERE relid = '{prefix}jobs'::regclass;

-- name: poller_session
-- The drains' outside poller runs jobs_unfinished every 10 ms on its own connection: with
-- statistics that say every row is pending (`analyzed`), the planner answers it with a
-- sequential scan, which reads the whole table once the drain is nearly done (about 1 ms a
-- poll for 20,000 jobs) and takes CPU from the drain it watches. Index scans only, here.
SET enable_seqscan = off;

-- name: jobs_unfinished
-- Whether any job of the benchmark's prefix is still waiting or running (drain finished?).
-- Each test matches the predicate of a partial index (waiting: the claim index; running:
-- the running index, `taken_by IS NOT NULL`, which every claim sets). `state = 'running'`
-- alone matches neither running index, so with sequential scans off the planner chose a
-- scan priced past jit_above_cost: every poll was JIT-compiled, tens of milliseconds of
-- server CPU every 10 ms. Not the running-queue index: its `queue IS NOT NULL` cannot be
-- matched from PostgreSQL 17 on, which drops that test on a NOT NULL column from the query
-- (tests/bench/test_bench_parts.py runs on 15 here and on 18 embedded).
SELECT EXISTS (
    SELECT 1 FROM {prefix}jobs WHERE state IN ('pending', 'retrying')
) OR EXISTS (
    SELECT 1 FROM {prefix}jobs WHERE state = 'running' AND taken_by IS NOT NULL
) AS busy;

-- name: jobs_succeeded
-- Jobs of %(queue)s finished so far (when a collapsed drain is cut off).
SELECT count(*) AS n FROM {prefix}jobs WHERE state = 'succeeded' AND queue = %(queue)s;

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

-- name: scale_waiting_count
-- W5: jobs still waiting (the claim index holds exactly these).
SELECT count(*) AS n FROM {prefix}jobs WHERE state IN ('pending', 'retrying');

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
       current_setting('autovacuum') AS autovacuum,
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
