-- Queries of bench/fairness.py (fair share across partition keys).

-- name: fair_done_by_key
SELECT partition_key, count(*) FROM {prefix}jobs
WHERE queue = %(queue)s AND state = 'succeeded'
GROUP BY partition_key;

-- name: fair_starts_by_window
-- Starts per key in consecutive windows of %(window)s seconds from the first start.
WITH s AS (
    SELECT partition_key, started_at, min(started_at) OVER () AS first
    FROM {prefix}jobs
    WHERE queue = %(queue)s AND started_at IS NOT NULL
)
SELECT floor(extract(epoch FROM started_at - first) / %(window)s)::integer AS w,
       partition_key, count(*)
FROM s
GROUP BY 1, 2
ORDER BY 1, 2;
