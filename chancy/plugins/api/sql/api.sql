-- The dashboard's statements. The job filters are rules compiled by chancy.rule into a
-- fragment whose values are parameters; the {where} placeholder in braces is the only thing
-- filled in, through psycopg.sql. Every statement here is bounded (LIMIT, capped counts or
-- the planner's estimates) so an open dashboard stays cheap on a busy database.

-- name: api_statement_timeout
-- Bound every dashboard statement of this transaction, and plan them without JIT: the
-- planner's cost of the capped counts easily passes jit_above_cost, and compiling them took
-- ~25 ms per statement where running them takes ~1 ms. No parallel workers either: one
-- dashboard read must use one server process, so a user's slow filters take at most as many
-- CPUs as they have reads in flight, and the workers' statements find a CPU free.
SELECT set_config('statement_timeout', %(ms)s::text, true), set_config('jit', 'off', true),
       set_config('max_parallel_workers_per_gather', '0', true);

-- name: api_jobs_list
-- One page of jobs matching the filter, newest first; keyset pagination on the time-ordered
-- id (the cursor is the last id of the previous page).
SELECT j.id, j.queue, j.func, j.state, j.priority, j.attempts, j.max_attempts, j.recoveries,
       j.taken_by, j.created_at, j.scheduled_at, j.started_at, j.completed_at, j.unique_key,
       jsonb_array_length(j.errors) AS error_count, (j.meta ? 'cancelled') AS cancelled
FROM {prefix}jobs AS j
WHERE ({where}) AND (%(cursor)s::uuid IS NULL OR j.id < %(cursor)s::uuid)
ORDER BY j.id DESC
LIMIT %(limit)s;

-- name: api_jobs_ids
-- The ids of jobs matching the filter (for bulk actions), newest first, bounded.
SELECT j.id FROM {prefix}jobs AS j
WHERE ({where})
ORDER BY j.id DESC
LIMIT %(limit)s;

-- name: api_jobs_count
-- Jobs matching the filter, counted up to a cap.
SELECT count(*) AS n FROM (
    SELECT 1 FROM {prefix}jobs AS j WHERE ({where}) LIMIT %(cap)s
) AS c;

-- name: api_jobs_estimate
-- The planner's estimate of the jobs matching the filter (counts past the cap).
EXPLAIN (FORMAT JSON) SELECT 1 FROM {prefix}jobs AS j WHERE ({where});

-- name: api_jobs_table_estimate
-- The table's live row count as the statistics system keeps it (updated as transactions
-- end, unlike reltuples, which only ANALYZE and VACUUM refresh): no scan at all.
SELECT greatest(pg_stat_get_live_tuples(c.oid), c.reltuples, 0)::bigint AS estimate
FROM pg_class AS c WHERE c.oid = to_regclass(%(table)s);

-- name: api_job_get
SELECT * FROM {prefix}jobs WHERE id = %(id)s;

-- name: api_recent_functions
-- Functions seen among the most recent jobs (primary key order), with their counts there.
SELECT r.func, count(*) AS recent,
       count(*) FILTER (WHERE r.state = 'failed') AS failed,
       max(r.created_at) AS last_pushed,
       array_agg(DISTINCT r.queue) AS queues
FROM (SELECT func, state, queue, created_at FROM {prefix}jobs ORDER BY id DESC LIMIT %(scan)s) AS r
GROUP BY r.func
ORDER BY r.func;

-- name: api_system
-- Server facts for the system page.
SELECT version() AS server_version,
       current_database() AS database,
       now() AS now,
       pg_database_size(current_database()) AS database_bytes,
       (SELECT coalesce(pg_total_relation_size(to_regclass(%(jobs)s)), 0)) AS jobs_bytes,
       (SELECT greatest(c.reltuples, 0)::bigint FROM pg_class AS c
        WHERE c.oid = to_regclass(%(jobs)s)) AS jobs_estimate,
       current_setting('max_connections')::int AS max_connections,
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database())
           AS connections;

-- name: api_schema_versions
SELECT version_of, version FROM {prefix}schema_version ORDER BY version_of;

-- name: api_ping
SELECT 1 AS ok;

-- name: api_workers
-- Workers with liveness (database time), leadership and their running jobs.
SELECT w.worker_id, w.tags, w.queues, w.last_seen, w.expires_at, w.started_at, w.hostname,
       w.pid, w.version,
       (w.expires_at > now()) AS alive,
       (l.worker_id IS NOT NULL) AS is_leader,
       (SELECT count(*) FROM {prefix}jobs AS j
        WHERE j.state = 'running' AND j.taken_by = w.worker_id) AS running
FROM {prefix}workers AS w
LEFT JOIN {prefix}leader AS l ON l.worker_id = w.worker_id AND l.expires_at > now()
ORDER BY w.worker_id;

-- name: api_jobs_count_by_state
-- Jobs matching the filter in each state, each counted up to a cap, in one statement.
SELECT s.state, (
    SELECT count(*) FROM (
        SELECT 1 FROM {prefix}jobs AS j WHERE j.state = s.state AND ({where}) LIMIT %(cap)s
    ) AS c
) AS n
FROM unnest(%(states)s::text[]) AS s(state);

-- name: api_jobs_active_counts
-- The waiting and running jobs of the whole table, each state counted up to a cap. The
-- states are constants so that each count reads its small partial index (jobs_claim,
-- jobs_running), never the finished jobs.
SELECT
    (SELECT count(*) FROM (
        SELECT 1 FROM {prefix}jobs WHERE state = 'pending' LIMIT %(cap)s) AS c) AS pending,
    (SELECT count(*) FROM (
        SELECT 1 FROM {prefix}jobs WHERE state = 'retrying' LIMIT %(cap)s) AS c) AS retrying,
    (SELECT count(*) FROM (
        SELECT 1 FROM {prefix}jobs WHERE state = 'running' LIMIT %(cap)s) AS c) AS running;

-- name: api_jobs_state_stats
-- The table's live row count and the state column's most common values and their shares
-- at the last ANALYZE (no scan).
SELECT greatest(pg_stat_get_live_tuples(c.oid), c.reltuples, 0)::bigint AS estimate,
       s.most_common_vals::text::text[] AS states,
       s.most_common_freqs AS freqs,
       s.n_distinct
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_stats AS s
    ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'state'
WHERE c.oid = to_regclass(%(table)s);

-- name: api_overview
-- Everything the overview polls, in one statement: queues with their depths (waiting counted
-- up to a cap through the claim index), workers, and running jobs on dead workers. The last
-- walks the index of running jobs by worker one holder at a time (a skip scan over at most
-- 1000 holders) and lists the jobs of holders without a live heartbeat: never the whole
-- table in id order, which a poll with no such job would otherwise read to its end.
SELECT
    (SELECT coalesce(json_agg(row_to_json(q) ORDER BY q.name), '[]'::json) FROM (
        SELECT qq.*,
            (SELECT count(*) FROM (
                SELECT 1 FROM {prefix}jobs AS j
                WHERE j.queue = qq.name AND j.state IN ('pending', 'retrying')
                ORDER BY j.priority DESC, j.id
                LIMIT %(cap)s
            ) AS w) AS waiting,
            (SELECT count(*) FROM {prefix}jobs AS j
                WHERE j.state = 'running' AND j.queue = qq.name) AS running
        FROM {prefix}queues AS qq
    ) AS q) AS queues,
    (SELECT coalesce(json_agg(row_to_json(w) ORDER BY w.worker_id), '[]'::json) FROM (
        SELECT w.worker_id, w.queues, (w.expires_at > now()) AS alive,
               (l.worker_id IS NOT NULL) AS is_leader
        FROM {prefix}workers AS w
        LEFT JOIN {prefix}leader AS l ON l.worker_id = w.worker_id AND l.expires_at > now()
    ) AS w) AS workers,
    (SELECT coalesce(json_agg(s.id ORDER BY s.id), '[]'::json) FROM (
        WITH RECURSIVE holders(taken_by, n) AS (
            (SELECT j.taken_by, 1 FROM {prefix}jobs AS j
             WHERE j.state = 'running' AND j.taken_by > ''
             ORDER BY j.taken_by
             LIMIT 1)
            UNION ALL
            SELECT (SELECT j.taken_by FROM {prefix}jobs AS j
                    WHERE j.state = 'running' AND j.taken_by > h.taken_by
                    ORDER BY j.taken_by
                    LIMIT 1), h.n + 1
            FROM holders AS h
            WHERE h.taken_by IS NOT NULL AND h.n < 1000
        )
        SELECT j.id FROM holders AS h
        CROSS JOIN LATERAL (
            SELECT j.id FROM {prefix}jobs AS j
            WHERE j.state = 'running' AND j.taken_by = h.taken_by
            ORDER BY j.id
            LIMIT %(stuck)s
        ) AS j
        WHERE h.taken_by IS NOT NULL
          AND NOT EXISTS (
              SELECT 1 FROM {prefix}workers AS w
              WHERE w.worker_id = h.taken_by AND w.expires_at > now()
          )
        ORDER BY j.id
        LIMIT %(stuck)s
    ) AS s) AS stuck;

-- name: api_queues
-- Every queue's stored row, read as stored: the dashboard validates each one itself, so a
-- row with invalid settings is shown (marked invalid) instead of failing the page.
SELECT * FROM {prefix}queues ORDER BY name;

-- name: api_queue
SELECT * FROM {prefix}queues WHERE name = %(name)s;

-- name: api_queue_depths
-- Every declared queue with its waiting jobs (pending or retrying, counted up to a cap
-- through the claim index), its running jobs (through the index of running jobs by queue),
-- and how long the job it would claim next has been due, in seconds (0 when none is due).
-- That age walks the claim index one priority at a time (a skip scan, at most
-- %(priorities)s distinct priorities), taking each priority's first due job in claim order,
-- so a queue starved at a low priority still shows its age; never a scan of the backlog.
SELECT q.name AS queue,
    (SELECT count(*) FROM (
        -- In claim order: the capped count walks the claim index, whatever the planner
        -- guesses of the cap (a generic plan would otherwise scan the table up to it).
        SELECT 1 FROM {prefix}jobs AS j
        WHERE j.queue = q.name AND j.state IN ('pending', 'retrying')
        ORDER BY j.priority DESC, j.id
        LIMIT %(cap)s
    ) AS w) AS waiting,
    (SELECT count(*) FROM {prefix}jobs AS j
        WHERE j.state = 'running' AND j.queue = q.name) AS running,
    coalesce((
        WITH RECURSIVE p(priority, n) AS (
            (SELECT j.priority, 1 FROM {prefix}jobs AS j
             WHERE j.queue = q.name AND j.state IN ('pending', 'retrying')
             ORDER BY j.priority DESC
             LIMIT 1)
            UNION ALL
            SELECT (SELECT j.priority FROM {prefix}jobs AS j
                    WHERE j.queue = q.name AND j.state IN ('pending', 'retrying')
                      AND j.priority < p.priority
                    ORDER BY j.priority DESC
                    LIMIT 1), p.n + 1
            FROM p
            WHERE p.priority IS NOT NULL AND p.n < %(priorities)s
        )
        SELECT extract(epoch FROM now() - min(h.scheduled_at))::float8
        FROM p, LATERAL (
            SELECT j.scheduled_at FROM {prefix}jobs AS j
            WHERE j.queue = q.name AND j.state IN ('pending', 'retrying')
              AND j.priority = p.priority AND j.scheduled_at <= now()
            ORDER BY j.id
            LIMIT 1
        ) AS h
        WHERE p.priority IS NOT NULL
    ), 0) AS oldest_due_seconds
FROM {prefix}queues AS q
ORDER BY q.name;

-- name: api_queue_waiting_estimate
-- The planner's estimate of a queue's waiting jobs, for queues past the counting cap.
EXPLAIN (FORMAT JSON)
SELECT 1 FROM {prefix}jobs WHERE queue = %(queue)s AND state IN ('pending', 'retrying');

-- name: api_cluster
-- Workers with a live heartbeat, and the holder of the live leadership lease (NULL when
-- none), by database time.
SELECT (SELECT count(*) FROM {prefix}workers WHERE expires_at > now()) AS live_workers,
       (SELECT l.worker_id FROM {prefix}leader AS l
        WHERE l.expires_at > now()
        ORDER BY l.id
        LIMIT 1) AS leader;
