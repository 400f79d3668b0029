-- Batches ({prefix}batches) and the jobs of each open batch whose outcome the leader has not
-- recorded yet ({prefix}batch_jobs).
--
-- A pusher writes the batch row, its jobs (through the core push) and their membership in one
-- transaction. The leader records finished members in passes: each pass is one transaction
-- that takes batch_pass_lock (the lease fence, and a transaction-level advisory lock so that
-- two passes never count at once), deletes the members whose jobs finished and adds their
-- outcomes to the batch row (batch_record), marks done the batches with nothing remaining
-- (batch_finish: only while finished_at is NULL, so once) and pushes their callbacks in the
-- same transaction (batch_callbacks records their ids). Every statement reaches its rows by
-- primary key or index; none reads the jobs table except by primary key.

-- name: batch_insert
-- A new batch and its callbacks (packed jobs, NULL when not given), before its jobs are pushed.
INSERT INTO {prefix}batches (id, on_success, on_failure, on_finish)
VALUES (%(id)s, %(on_success)s::jsonb, %(on_failure)s::jsonb, %(on_finish)s::jsonb);

-- name: batch_add_jobs
-- The batch's members, in one statement however many: the jobs pushed without a unique key
-- (new ids, which no other batch can hold: a plain insert), then those pushed with one (a
-- unique key may have mapped them to a live job already in another batch, which stays in that
-- batch: ON CONFLICT, twice the cost per row, only for these). The members are counted on
-- the batch row, and the leader is told (batch.created).
WITH fresh AS (
    INSERT INTO {prefix}batch_jobs (job_id, batch_id)
    SELECT u.job_id, %(id)s::uuid FROM unnest(%(job_ids)s::uuid[]) AS u(job_id)
    RETURNING 1
), keyed AS (
    INSERT INTO {prefix}batch_jobs (job_id, batch_id)
    SELECT u.job_id, %(id)s::uuid FROM unnest(%(keyed_ids)s::uuid[]) AS u(job_id)
    ON CONFLICT (job_id) DO NOTHING
    RETURNING 1
), added AS (
    SELECT (SELECT count(*) FROM fresh) + (SELECT count(*) FROM keyed) AS n
), counted AS (
    UPDATE {prefix}batches AS b
    SET total = b.total + a.n, remaining = b.remaining + a.n
    FROM added AS a
    WHERE b.id = %(id)s::uuid
    RETURNING b.total
), told AS (
    SELECT pg_notify('{prefix}events', json_build_object(
        't', 'batch.created', 'id', %(id)s::uuid)::text)
    WHERE %(notify)s
)
SELECT (SELECT total FROM counted) AS total, (SELECT count(*) FROM told) AS notified;

-- name: batch_get
-- A batch, with the live states of its members not recorded yet (a job that vanished before
-- it was recorded counts as failed, as the leader counts it).
SELECT b.id, b.total, b.remaining, b.succeeded, b.failed, b.callbacks, b.created_at,
       b.finished_at, b.on_success, b.on_failure, b.on_finish,
       coalesce((
           SELECT jsonb_object_agg(s.state, s.n)
           FROM (
               SELECT coalesce(j.state, 'failed') AS state, count(*) AS n
               FROM {prefix}batch_jobs AS m
               LEFT JOIN LATERAL (
                   SELECT j.state FROM {prefix}jobs AS j WHERE j.id = m.job_id OFFSET 0
               ) AS j ON true
               WHERE m.batch_id = b.id
               GROUP BY 1
           ) AS s
       ), '{}'::jsonb) AS unrecorded
FROM {prefix}batches AS b
WHERE b.id = %(id)s::uuid;

-- name: batch_pass_lock
-- The start of a pass: a row only while the lease in the fence is current (the lease row
-- share-locked until commit), after taking the batch passes' advisory lock for this prefix
-- (held until commit: passes count one after the other).
SELECT 1 AS held
FROM (SELECT pg_advisory_xact_lock(hashtext('{prefix}batches')) AS locked) AS l
WHERE {leader_fence};

-- name: batch_record
-- Record the outcome of those of the given jobs that are members and finished (a job that
-- vanished counts as failed): delete their member rows and add them to their batch's counts.
-- Returns the batches counted, with what remains of each.
WITH finished AS (
    SELECT m.job_id, m.batch_id, coalesce(j.state, 'failed') AS state
    FROM {prefix}batch_jobs AS m
    LEFT JOIN LATERAL (
        SELECT j.id, j.state FROM {prefix}jobs AS j WHERE j.id = m.job_id OFFSET 0
    ) AS j ON true
    WHERE m.job_id = ANY(ARRAY(SELECT unnest(%(job_ids)s::uuid[])))
      AND (j.id IS NULL OR j.state IN ('succeeded', 'failed'))
), gone AS (
    DELETE FROM {prefix}batch_jobs AS m
    WHERE m.job_id = ANY(ARRAY(SELECT job_id FROM finished))
    RETURNING m.job_id
), tally AS (
    SELECT f.batch_id,
           count(*) FILTER (WHERE f.state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE f.state <> 'succeeded') AS failed
    FROM gone AS g
    JOIN finished AS f ON f.job_id = g.job_id
    GROUP BY f.batch_id
)
UPDATE {prefix}batches AS b
SET remaining = b.remaining - t.succeeded - t.failed,
    succeeded = b.succeeded + t.succeeded,
    failed = b.failed + t.failed
FROM tally AS t
WHERE b.id = ANY(ARRAY(SELECT batch_id FROM tally)) AND b.id = t.batch_id
RETURNING b.id, b.remaining;

-- name: batch_finish
-- Close the given batches that have nothing remaining, once: only a batch whose finished_at is
-- still NULL is changed, and the transaction that changes it pushes its callbacks. Returns what
-- the callbacks need.
UPDATE {prefix}batches AS b
SET finished_at = now()
WHERE b.id = ANY(ARRAY(SELECT unnest(%(ids)s::uuid[])))
  AND b.remaining = 0
  AND b.finished_at IS NULL
RETURNING b.id, b.total, b.succeeded, b.failed, b.on_success, b.on_failure, b.on_finish;

-- name: batch_callbacks
-- Record the ids of the callback jobs just pushed for closed batches, and announce each closed
-- batch (batch.finished).
WITH recorded AS (
    UPDATE {prefix}batches AS b
    SET callbacks = u.callbacks
    FROM unnest(%(ids)s::uuid[], %(callbacks)s::jsonb[]) AS u(id, callbacks)
    WHERE b.id = ANY(ARRAY(SELECT unnest(%(ids)s::uuid[]))) AND b.id = u.id
    RETURNING b.id
), told AS (
    SELECT pg_notify('{prefix}events', json_build_object(
        't', 'batch.finished', 'id', r.id)::text)
    FROM recorded AS r
    WHERE %(notify)s
)
SELECT (SELECT count(*) FROM recorded) AS recorded, (SELECT count(*) FROM told) AS notified;

-- name: batch_member_page
-- One page of unrecorded members in job id order (the full pass checks them all, page by page).
SELECT job_id FROM {prefix}batch_jobs
WHERE job_id > %(after)s::uuid
ORDER BY job_id
LIMIT %(limit)s;

-- name: batch_open_page
-- One page of open batches in id order (the full pass closes those with nothing remaining).
SELECT id FROM {prefix}batches
WHERE finished_at IS NULL AND id > %(after)s::uuid
ORDER BY id
LIMIT %(limit)s;

-- name: batch_cleanup
-- Delete one batch of batches closed longer ago than the retention (they have no members left).
WITH doomed AS (
    SELECT id FROM {prefix}batches
    -- A range with both ends: without statistics the planner estimates it as a few rows
    -- (one end alone, as a third of the table) and walks the index instead of sorting.
    WHERE finished_at > '-infinity'::timestamptz
      AND finished_at < now() - make_interval(secs => %(retention)s)
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM {prefix}batches AS b
    WHERE b.id = ANY(ARRAY(SELECT id FROM doomed))
    RETURNING b.id
)
SELECT count(*) AS deleted FROM gone;

-- name: batch_prune_guard
-- The batch plugin's guard on the pruner (Plugin.prune_guard), over the finished job j: a job
-- whose outcome the leader has not recorded on its batch yet is kept (deleted, it would count
-- as failed). A scalar subquery, so each candidate is one primary key look-up.
(SELECT count(*) FROM {prefix}batch_jobs AS m WHERE m.job_id = j.id) = 0

-- name: batch_list
-- One page of batches, newest first, before the id given (keyset paging), open, closed or
-- both, with the counts recorded so far (the dashboard's list; no job is read).
SELECT id, total, remaining, succeeded, failed, callbacks, created_at, finished_at
FROM {prefix}batches
WHERE id < %(before)s::uuid
  AND (%(open)s::boolean IS NULL OR (finished_at IS NULL) = %(open)s::boolean)
ORDER BY id DESC
LIMIT %(limit)s;
