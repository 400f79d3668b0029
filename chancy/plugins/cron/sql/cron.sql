-- Cron schedules ({prefix}cron). Due-ness is decided with the database's now(); the next fire
-- time is computed in Python from the expression and its time zone, starting from a now()
-- read in the same transaction. The firing statements are leader-only and fenced by the
-- leader's lease (worker_id and term current in the database, the lease row share-locked so no
-- election completes while the transaction is open); %(fenced)s is false only under
-- ImmediateLeadership.

-- name: cron_now
SELECT now() AS now;

-- name: cron_upsert
-- Create or replace schedules by unique key. A schedule whose expression and time zone are
-- unchanged keeps its next_run (so re-declaring schedules at every deploy neither skips nor
-- repeats a slot); otherwise next_run is the value computed for the new expression. last_run
-- and a pause are kept (a deploy does not undo an operator's pause). Workers' leaders are told (cron.scheduled) so they can fire sooner than their poll.
WITH upserted AS (
    INSERT INTO {prefix}cron AS c (unique_key, queue, job, cron, next_run, timezone)
    SELECT * FROM unnest(
        %(keys)s::text[], %(queues)s::text[], %(jobs)s::jsonb[], %(crons)s::text[],
        %(next_runs)s::timestamptz[], %(timezones)s::text[]
    )
    ON CONFLICT (unique_key) DO UPDATE
        SET queue = EXCLUDED.queue,
            job = EXCLUDED.job,
            cron = EXCLUDED.cron,
            timezone = EXCLUDED.timezone,
            next_run = CASE
                WHEN c.cron = EXCLUDED.cron AND c.timezone = EXCLUDED.timezone THEN c.next_run
                ELSE EXCLUDED.next_run
            END
    RETURNING c.unique_key
), told AS (
    SELECT pg_notify('{prefix}events', json_build_object('t', 'cron.scheduled')::text)
    WHERE %(notify)s AND EXISTS (SELECT 1 FROM upserted)
)
SELECT (SELECT count(*) FROM upserted) AS scheduled, (SELECT count(*) FROM told) AS notified;

-- name: cron_delete
WITH gone AS (
    DELETE FROM {prefix}cron WHERE unique_key = ANY(%(keys)s::text[]) RETURNING unique_key
)
SELECT count(*) AS deleted FROM gone;

-- name: cron_get
SELECT unique_key, queue, job, cron, last_run, next_run, timezone, paused_at
FROM {prefix}cron
WHERE %(keys)s::text[] IS NULL OR unique_key = ANY(%(keys)s::text[])
ORDER BY unique_key;

-- name: cron_due
-- The schedules due now, locked until the transaction that fires them commits; rows another
-- transaction holds are skipped. Keys this leader could not read are left out.
SELECT c.unique_key, c.job, c.cron, c.timezone, c.next_run, now() AS now
FROM {prefix}cron AS c
WHERE c.next_run <= now()
  AND c.paused_at IS NULL
  AND c.unique_key <> ALL(%(skip)s::text[])
  AND {leader_fence}
ORDER BY c.next_run, c.unique_key
LIMIT %(limit)s
FOR UPDATE OF c SKIP LOCKED;

-- name: cron_advance
-- Record a firing and move each schedule to its next slot, in the transaction that pushed the
-- jobs (rows already locked by cron_due).
UPDATE {prefix}cron AS c
SET last_run = now(), next_run = u.next_run
FROM unnest(%(keys)s::text[], %(next_runs)s::timestamptz[]) AS u(unique_key, next_run)
WHERE c.unique_key = u.unique_key;

-- name: cron_wait
-- Seconds until the earliest schedule is due (NULL when there is none).
SELECT extract(epoch FROM min(next_run) - now())::float8 AS wait
FROM {prefix}cron
WHERE unique_key <> ALL(%(skip)s::text[]) AND paused_at IS NULL;

-- name: cron_pause
-- Pause schedules (already paused ones keep their pause time); return the keys that exist.
UPDATE {prefix}cron
SET paused_at = coalesce(paused_at, now())
WHERE unique_key = ANY(%(keys)s::text[])
RETURNING unique_key;

-- name: cron_paused_rows
-- Paused schedules to resume, locked until their next run is written (cron_resume).
SELECT unique_key, cron, timezone, now() AS now
FROM {prefix}cron
WHERE unique_key = ANY(%(keys)s::text[]) AND paused_at IS NOT NULL
FOR UPDATE;

-- name: cron_resume
-- Resume schedules at their next slot after now (the slots missed while paused are not
-- fired), and tell the leaders so they wait for the right time.
WITH resumed AS (
    UPDATE {prefix}cron AS c
    SET paused_at = NULL, next_run = u.next_run
    FROM unnest(%(keys)s::text[], %(next_runs)s::timestamptz[]) AS u(unique_key, next_run)
    WHERE c.unique_key = u.unique_key AND c.paused_at IS NOT NULL
    RETURNING c.unique_key
), told AS (
    SELECT pg_notify('{prefix}events', json_build_object('t', 'cron.scheduled')::text)
    WHERE %(notify)s AND EXISTS (SELECT 1 FROM resumed)
)
SELECT (SELECT count(*) FROM resumed) AS resumed, (SELECT count(*) FROM told) AS notified;
