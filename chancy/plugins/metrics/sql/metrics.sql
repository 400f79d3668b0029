-- The metrics plugin's statements. Workers aggregate in memory and write a flush in one
-- statement; the leader samples queue depths; readers select ranges of buckets.

-- name: metrics_add
-- Add one flush of counters, histograms and custom gauges to every resolution's current bucket
-- (database time decides the bucket) and to the all-time 'total' row, in one statement.
-- Counters and histograms add up; a gauge keeps its latest value, by when it was observed
-- (database time less the age the worker reports), whichever worker flushes first. A row
-- recorded with another kind or unit than the stored one is left alone (Chancy 0.26 dropped
-- such observations too). Rows are written in key order so concurrent flushes from several
-- workers cannot deadlock.
INSERT INTO {prefix}metrics AS m
    (name, kind, resolution, bucket, queue, func, count, total, histogram, unit, minimum,
     maximum, updated_at)
SELECT s.name, s.kind, r.resolution,
       CASE WHEN r.secs IS NULL THEN TIMESTAMPTZ '2000-01-01 00:00:00+00'
            ELSE date_bin(make_interval(secs => r.secs), now(),
                          TIMESTAMPTZ '2000-01-01 00:00:00+00') END,
       s.queue, s.func, s.count, s.total, s.histogram::bigint[], s.unit, s.minimum, s.maximum,
       now() - make_interval(secs => s.age)
FROM unnest(
    %(names)s::text[], %(kinds)s::text[], %(queues)s::text[], %(funcs)s::text[],
    %(counts)s::bigint[], %(totals)s::float8[], %(histograms)s::text[], %(units)s::text[],
    %(minimums)s::float8[], %(maximums)s::float8[], %(ages)s::float8[]
) AS s(name, kind, queue, func, count, total, histogram, unit, minimum, maximum, age)
CROSS JOIN unnest(%(resolutions)s::text[], %(steps)s::float8[]) AS r(resolution, secs)
ORDER BY 1, 3, 4, 5, 6
ON CONFLICT (name, resolution, bucket, queue, func) DO UPDATE SET
    count = m.count + EXCLUDED.count,
    total = CASE
        WHEN m.kind <> 'gauge' THEN m.total + EXCLUDED.total
        WHEN EXCLUDED.updated_at >= m.updated_at THEN EXCLUDED.total
        ELSE m.total
    END,
    histogram = CASE
        WHEN m.histogram IS NULL OR EXCLUDED.histogram IS NULL
            OR cardinality(m.histogram) <> cardinality(EXCLUDED.histogram)
            THEN coalesce(EXCLUDED.histogram, m.histogram)
        ELSE ARRAY(
            SELECT a + b FROM unnest(m.histogram, EXCLUDED.histogram) WITH ORDINALITY AS h(a, b, i)
            ORDER BY h.i
        )
    END,
    minimum = least(m.minimum, EXCLUDED.minimum),
    maximum = greatest(m.maximum, EXCLUDED.maximum),
    updated_at = CASE
        WHEN m.kind = 'gauge' THEN greatest(m.updated_at, EXCLUDED.updated_at)
        ELSE now()
    END
WHERE m.kind = EXCLUDED.kind AND m.unit IS NOT DISTINCT FROM EXCLUDED.unit;

-- name: metrics_set_gauges
-- Record sampled gauges: each resolution's current bucket keeps the last value.
INSERT INTO {prefix}metrics AS m
    (name, kind, resolution, bucket, queue, func, count, total)
SELECT s.name, 'gauge', r.resolution,
       date_bin(make_interval(secs => r.secs), now(), TIMESTAMPTZ '2000-01-01 00:00:00+00'),
       s.queue, '', 1, s.value
FROM unnest(%(names)s::text[], %(queues)s::text[], %(values)s::float8[])
    AS s(name, queue, value)
CROSS JOIN unnest(%(resolutions)s::text[], %(steps)s::float8[]) AS r(resolution, secs)
ORDER BY 1, 3, 4, 5
ON CONFLICT (name, resolution, bucket, queue, func) DO UPDATE SET
    count = m.count + 1,
    total = EXCLUDED.total,
    updated_at = now();

-- name: metrics_queue_depth
-- Jobs waiting (pending or retrying; counted up to a cap through the claim index) and
-- running, per declared queue. Cheap whatever the size of the jobs table.
SELECT q.name AS queue,
    (SELECT count(*) FROM (
        SELECT 1 FROM {prefix}jobs AS j
        WHERE j.queue = q.name AND j.state IN ('pending', 'retrying')
        LIMIT %(cap)s
    ) AS w) AS waiting,
    (SELECT count(*) FROM {prefix}jobs AS j
        WHERE j.state = 'running' AND j.queue = q.name) AS running
FROM {prefix}queues AS q
ORDER BY q.name;

-- name: metrics_queue_waiting_estimate
-- The planner's estimate of a queue's waiting jobs, for queues past the counting cap.
EXPLAIN (FORMAT JSON)
SELECT 1 FROM {prefix}jobs WHERE queue = %(queue)s AND state IN ('pending', 'retrying');

-- name: metrics_jobs_inserted
-- Rows ever inserted into the jobs table (statistics collector), to derive jobs pushed.
SELECT coalesce(sum(n_tup_ins), 0)::bigint AS inserted
FROM pg_stat_user_tables
WHERE relid = to_regclass(%(table)s);

-- name: metrics_cleanup
-- Delete buckets past each resolution's retention.
WITH gone AS (
    DELETE FROM {prefix}metrics AS m
    USING unnest(%(resolutions)s::text[], %(keep)s::float8[]) AS r(resolution, keep)
    WHERE m.resolution = r.resolution AND m.bucket < now() - make_interval(secs => r.keep)
    RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- name: metrics_series
-- Buckets of some metrics at one resolution within a time range, optionally for one series.
SELECT name, kind, queue, func, bucket, count, total, histogram
FROM {prefix}metrics
WHERE name = ANY(%(names)s::text[])
  AND resolution = %(resolution)s
  AND bucket >= %(since)s AND bucket <= %(until)s
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(func)s::text IS NULL OR func = %(func)s::text)
ORDER BY bucket, name, queue, func
LIMIT %(limit)s;

-- name: metrics_names
-- The metrics and series that exist (all-time rows, plus recent gauges).
SELECT name, kind, queue, func FROM {prefix}metrics WHERE resolution = 'total'
UNION
SELECT name, kind, queue, func FROM {prefix}metrics
WHERE resolution = '1hour' AND kind = 'gauge' AND bucket > now() - interval '1 day'
ORDER BY 1, 3, 4;

-- name: metrics_totals
-- All-time counters and histograms (for the Prometheus exposition).
SELECT name, kind, queue, func, count, total, histogram, unit
FROM {prefix}metrics WHERE resolution = 'total' AND kind <> 'gauge'
ORDER BY name, queue, func;

-- name: metrics_latest_gauges
-- The last sample of each gauge series taken in the last ten minutes.
SELECT DISTINCT ON (name, queue, func) name, queue, func, total AS value, updated_at, unit
FROM {prefix}metrics
WHERE kind = 'gauge' AND resolution = '1min' AND bucket > now() - interval '10 minutes'
ORDER BY name, queue, func, bucket DESC;

-- name: metrics_definitions
-- Every series ever recorded, from its all-time row: what get_metrics and list_metrics offer.
-- Custom metrics (recorded with a unit) are rows with an empty queue and function.
SELECT name, kind, unit, queue, func
FROM {prefix}metrics
WHERE resolution = 'total'
ORDER BY name, queue, func;

-- name: metrics_points
-- The buckets of some metrics at one resolution in [start, end), for get_metrics. chancy's
-- job series are read for the given queues or functions only, unless every series is wanted.
SELECT name, kind, unit, queue, func, bucket, count, total, minimum, maximum, updated_at
FROM {prefix}metrics
WHERE name = ANY(%(names)s::text[])
  AND resolution = %(resolution)s
  AND bucket >= %(start)s AND bucket < %(end)s
  AND (%(every)s OR queue = ANY(%(queues)s::text[]) OR func = ANY(%(funcs)s::text[]))
ORDER BY bucket, name, queue, func;
