-- Named queries of W7, a fleet over a network (bench/w7.py).

-- name: w7_connections
-- Connections the worker hosts hold on the server right now: every host connects with the
-- application name w7h<number> (set in its DSN), so the driver's own connections do not count.
SELECT count(*) AS total,
       count(DISTINCT application_name) AS hosts,
       count(*) FILTER (WHERE state = 'active') AS active
FROM pg_stat_activity
WHERE application_name LIKE 'w7h%' AND pid <> pg_backend_pid();

-- name: w7_ping
-- One round trip, to measure the link's RTT as a client sees it.
SELECT 1 AS one;

-- name: w7_pickup_claims
-- Seconds from each timed push (the push transaction's start) to its claim (the claim
-- transaction's start), by the server's clock: the part of the pickup spent before the worker's
-- claim reached the server (the NOTIFY's way out, the wake-up, the claim's first statement).
SELECT extract(epoch FROM started_at - created_at)::float8 AS seconds
FROM {prefix}jobs
WHERE queue = %(queue)s AND func = 'bench.jobs.record_start' AND started_at IS NOT NULL;
