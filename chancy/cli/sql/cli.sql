-- Queries of the `chancy` command line. `{where}` (in braces) is a job filter compiled by
-- chancy.rule (column names from a whitelist, every value a bound parameter); it is the only
-- thing put into the text at run time besides the prefix.

-- name: cli_now
-- The database's clock: relative times (--since 2h) count back from it, and a worker's
-- heartbeat is judged by it, so a skewed clock on the operator's machine changes nothing.
SELECT now() AS now;

-- name: cli_jobs_list
-- One page of jobs matching the filter, newest first; keyset pagination on the time-ordered
-- id (--before is the last id of the previous page), so later pages cost the same.
SELECT j.id, j.queue, j.func, j.state, j.priority, j.attempts, j.max_attempts, j.recoveries,
       j.taken_by, j.created_at, j.scheduled_at, j.started_at, j.completed_at, j.unique_key,
       coalesce(jsonb_array_length(j.errors), 0) AS error_count,
       coalesce(j.meta -> 'cancelled' = 'true'::jsonb, false) AS cancelled
FROM {prefix}jobs AS j
WHERE ({where}) AND (%(before)s::uuid IS NULL OR j.id < %(before)s::uuid)
ORDER BY j.id DESC
LIMIT %(limit)s;

-- name: cli_jobs_ids
-- The ids of jobs matching the filter, newest first, bounded (for retry/cancel/purge).
SELECT j.id FROM {prefix}jobs AS j
WHERE ({where})
ORDER BY j.id DESC
LIMIT %(limit)s;
