-- Workflows ({prefix}workflows) and their steps ({prefix}workflow_steps).
--
-- A step's state column is what the leader last recorded: NULL until the step's job is queued,
-- 'pending' until that job finishes, then 'succeeded' or 'failed'. The leader advances
-- workflows in transactions that begin with workflow_lease (its lease row share-locked until
-- commit, so no election completes while they are open) and lock what they change with
-- SKIP LOCKED, so two advancing transactions never wait on each other.

-- name: workflow_push
-- Store a workflow and its steps in one statement: a new id inserts it; an id already stored
-- updates it as Chancy 0.26 did (name, state, and each step's job and dependencies; new steps
-- are added, steps left out are kept). A step whose job was queued is left as it is: its job
-- and state are the leader's, so a push never queues a step twice. A workflow with queued
-- steps is never put back to 'pending' (it would show pending while its steps run). The
-- leader is told either way (workflow.created or workflow.updated).
WITH w AS (
    INSERT INTO {prefix}workflows AS w (id, name, state, created_at, updated_at)
    VALUES (%(id)s, %(name)s, %(state)s, now(), now())
    ON CONFLICT (id) DO UPDATE SET
        name = EXCLUDED.name,
        state = CASE
            WHEN EXCLUDED.state = 'pending' AND (
                w.state = 'running' OR EXISTS (
                    SELECT 1 FROM {prefix}workflow_steps AS q
                    WHERE q.workflow_id = w.id AND q.job_id IS NOT NULL
                )
            ) THEN 'running'
            ELSE EXCLUDED.state
        END,
        updated_at = now()
    RETURNING w.id, w.state, w.created_at, w.updated_at, (w.xmax = 0) AS inserted
), s AS (
    INSERT INTO {prefix}workflow_steps AS s (workflow_id, step_id, job_data, dependencies)
    SELECT w.id, u.step_id, u.job_data, u.dependencies
    FROM w, unnest(%(step_ids)s::text[], %(jobs)s::jsonb[], %(dependencies)s::jsonb[])
        WITH ORDINALITY AS u(step_id, job_data, dependencies, ord)
    -- In the order they were added: fetched workflows list their steps in id order.
    ORDER BY u.ord
    ON CONFLICT (workflow_id, step_id) DO UPDATE SET
        job_data = EXCLUDED.job_data,
        dependencies = EXCLUDED.dependencies,
        updated_at = now()
    WHERE s.job_id IS NULL
    RETURNING 1
), told AS (
    SELECT pg_notify('{prefix}events', json_build_object(
        't', CASE WHEN w.inserted THEN 'workflow.created' ELSE 'workflow.updated' END,
        'id', w.id)::text)
    FROM w WHERE %(notify)s
)
SELECT w.id, w.state, w.created_at, w.updated_at, w.inserted,
       (SELECT count(*) FROM s) AS steps, (SELECT count(*) FROM told) AS notified
FROM w;

-- name: workflow_get_many
-- Workflows with their steps; a queued step shows its job's live state (looked up by primary
-- key, one step at a time, whatever the statistics say).
SELECT w.id, w.name, w.state, w.created_at, w.updated_at,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'step_id', s.step_id,
                      'job_data', s.job_data,
                      'dependencies', s.dependencies,
                      'job_id', s.job_id,
                      'state', coalesce(
                          (SELECT j.state FROM {prefix}jobs AS j WHERE j.id = s.job_id),
                          s.state
                      )
                  ) ORDER BY s.id)
           FROM {prefix}workflow_steps AS s
           WHERE s.workflow_id = w.id
       ), '[]'::jsonb) AS steps
FROM {prefix}workflows AS w
WHERE w.id = ANY(ARRAY(SELECT unnest(%(ids)s::uuid[])))
ORDER BY w.id DESC;

-- name: workflow_list
-- One page of workflows (newest first), with the same steps as workflow_get_many, filtered by
-- state and name: the dashboard's and fetch_workflows' list.
SELECT w.id, w.name, w.state, w.created_at, w.updated_at,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'step_id', s.step_id,
                      'job_data', s.job_data,
                      'dependencies', s.dependencies,
                      'job_id', s.job_id,
                      'state', coalesce(
                          (SELECT j.state FROM {prefix}jobs AS j WHERE j.id = s.job_id),
                          s.state
                      )
                  ) ORDER BY s.id)
           FROM {prefix}workflow_steps AS s
           WHERE s.workflow_id = w.id
       ), '[]'::jsonb) AS steps
FROM {prefix}workflows AS w
WHERE (%(states)s::text[] IS NULL OR w.state = ANY(%(states)s::text[]))
  AND (%(name)s::text IS NULL OR w.name = %(name)s::text)
ORDER BY w.id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: workflow_state
SELECT id, state FROM {prefix}workflows WHERE id = %(id)s;

-- name: workflow_results
-- The stored results of steps, given as (workflow, step) pairs: the dependencies of every step
-- in a claimed batch, read once as the batch starts, with their size so that only small ones
-- are cached. Each pair is looked up by the unique (workflow_id, step_id) index.
SELECT w.workflow_id, w.step_id, j.result, j.state, pg_column_size(j.result) AS size
FROM unnest(%(workflow_ids)s::uuid[], %(step_ids)s::text[]) AS w(workflow_id, step_id)
CROSS JOIN LATERAL (
    SELECT d.job_id FROM {prefix}workflow_steps AS d
    WHERE d.workflow_id = w.workflow_id AND d.step_id = w.step_id OFFSET 0
) AS d
LEFT JOIN LATERAL (
    SELECT j.result, j.state FROM {prefix}jobs AS j WHERE j.id = d.job_id OFFSET 0
) AS j ON true;

-- name: workflow_lease
-- The fence of an advancing transaction: a row only while this worker's lease is current. The
-- share lock lasts until commit.
SELECT 1 AS held WHERE {leader_fence};

-- name: workflow_has_pending_jobs
-- plan: per run
-- Whether any of these jobs is the unfinished job of a step (a cheap read before a pass).
SELECT EXISTS (
    SELECT 1 FROM {prefix}workflow_steps
    WHERE job_id = ANY(ARRAY(SELECT unnest(%(job_ids)s::uuid[]))) AND (state = 'pending') IS TRUE
) AS found;

-- name: workflow_active_ids
-- One page of unfinished workflows, for the periodic full pass.
SELECT id FROM {prefix}workflows
WHERE state IN ('pending', 'running') AND id > %(after)s::uuid
ORDER BY id
LIMIT %(limit)s;

-- name: workflow_sync_jobs
-- plan: per run
-- Record the outcome of the given finished jobs on their steps (if they are steps of unfinished
-- workflows); a step whose job vanished before its outcome was seen counts as failed. Returns
-- the workflows whose steps changed.
WITH finished AS (
    SELECT s.id, coalesce(j.state, 'failed') AS state
    FROM {prefix}workflow_steps AS s
    -- The step's workflow and job by primary key, one step at a time.
    CROSS JOIN LATERAL (
        SELECT w.state FROM {prefix}workflows AS w WHERE w.id = s.workflow_id OFFSET 0
    ) AS w
    LEFT JOIN LATERAL (
        SELECT j.id, j.state FROM {prefix}jobs AS j WHERE j.id = s.job_id OFFSET 0
    ) AS j ON true
    WHERE s.job_id = ANY(ARRAY(SELECT unnest(%(job_ids)s::uuid[])))
      AND (s.state = 'pending') IS TRUE
      AND w.state IN ('pending', 'running')
      AND (j.id IS NULL OR j.state IN ('succeeded', 'failed'))
    ORDER BY s.id
    FOR UPDATE OF s SKIP LOCKED
)
UPDATE {prefix}workflow_steps AS s
SET state = f.state, updated_at = now()
FROM finished AS f
WHERE s.id = f.id
RETURNING s.workflow_id;

-- name: workflow_sync_workflows
-- plan: per run
-- The same for every unfinished step of the given workflows (the full pass).
WITH finished AS (
    SELECT s.id, coalesce(j.state, 'failed') AS state
    FROM {prefix}workflow_steps AS s
    -- The step's workflow and job by primary key, one step at a time.
    CROSS JOIN LATERAL (
        SELECT w.state FROM {prefix}workflows AS w WHERE w.id = s.workflow_id OFFSET 0
    ) AS w
    LEFT JOIN LATERAL (
        SELECT j.id, j.state FROM {prefix}jobs AS j WHERE j.id = s.job_id OFFSET 0
    ) AS j ON true
    WHERE s.workflow_id = ANY(ARRAY(SELECT unnest(%(workflow_ids)s::uuid[])))
      AND (s.state = 'pending') IS TRUE
      AND w.state IN ('pending', 'running')
      AND (j.id IS NULL OR j.state IN ('succeeded', 'failed'))
    ORDER BY s.id
    FOR UPDATE OF s SKIP LOCKED
)
UPDATE {prefix}workflow_steps AS s
SET state = f.state, updated_at = now()
FROM finished AS f
WHERE s.id = f.id
RETURNING s.workflow_id;

-- name: workflow_settle
-- plan: per run
-- Lock the given unfinished workflows (skipping those another transaction holds) and finish
-- those that are done: failed as soon as one step failed, completed when every step
-- succeeded. Returns every workflow locked, with its state after this statement; finished
-- ones are announced (workflow.finished).
WITH target AS (
    SELECT w.id, w.state FROM {prefix}workflows AS w
    WHERE w.id = ANY(ARRAY(SELECT unnest(%(ids)s::uuid[])))
      AND (w.state IN ('pending', 'running')) IS TRUE
    ORDER BY w.id
    FOR UPDATE SKIP LOCKED
), summary AS (
    SELECT s.workflow_id AS id,
           bool_or(s.state = 'failed') AS failed,
           bool_and(s.state IS NOT DISTINCT FROM 'succeeded') AS succeeded
    FROM {prefix}workflow_steps AS s
    WHERE s.workflow_id = ANY(ARRAY(SELECT id FROM target))
    GROUP BY s.workflow_id
), done AS (
    UPDATE {prefix}workflows AS w
    SET state = CASE WHEN m.failed THEN 'failed' ELSE 'completed' END, updated_at = now()
    FROM summary AS m
    WHERE w.id = ANY(ARRAY(SELECT id FROM summary)) AND w.id = m.id
      AND (m.failed OR m.succeeded)
    RETURNING w.id, w.state
), told AS (
    SELECT pg_notify('{prefix}events', json_build_object(
        't', 'workflow.finished', 'id', d.id, 'state', d.state)::text)
    FROM done AS d WHERE %(notify)s
)
SELECT t.id, coalesce(d.state, t.state) AS state, d.id IS NOT NULL AS finished,
       (SELECT count(*) FROM told) AS notified
FROM target AS t
LEFT JOIN done AS d ON d.id = t.id;

-- name: workflow_ready
-- Steps of the given (locked, unfinished) workflows that are not queued yet and whose
-- dependencies all succeeded, locked so that no other transaction queues them too.
SELECT s.id, s.workflow_id, s.step_id, s.job_data, s.dependencies
FROM {prefix}workflow_steps AS s
WHERE s.workflow_id = ANY(ARRAY(SELECT unnest(%(ids)s::uuid[])))
  AND s.job_id IS NULL
  -- Each dependency is looked up alone, by the unique (workflow_id, step_id) index: written
  -- as a join, a table without statistics had it planned as a scan of every step per step.
  AND NOT EXISTS (
      SELECT 1
      FROM jsonb_array_elements_text(s.dependencies) AS dep(step_id)
      WHERE (
          SELECT d.state FROM {prefix}workflow_steps AS d
          WHERE d.workflow_id = s.workflow_id AND d.step_id = dep.step_id
      ) IS DISTINCT FROM 'succeeded'
  )
ORDER BY s.id
LIMIT %(limit)s
FOR UPDATE OF s SKIP LOCKED;

-- name: workflow_queued
-- Record the jobs just pushed for ready steps, and mark their workflows running.
WITH queued AS (
    UPDATE {prefix}workflow_steps AS s
    SET job_id = u.job_id, state = 'pending', updated_at = now()
    FROM unnest(%(ids)s::int[], %(job_ids)s::uuid[]) AS u(id, job_id)
    WHERE s.id = ANY(ARRAY(SELECT unnest(%(ids)s::int[]))) AND s.id = u.id
    RETURNING s.workflow_id
), started AS (
    UPDATE {prefix}workflows AS w
    SET state = 'running', updated_at = now()
    WHERE w.id = ANY(ARRAY(SELECT DISTINCT workflow_id FROM queued))
      AND (w.state = 'pending') IS TRUE
    RETURNING w.id
)
SELECT (SELECT count(*) FROM queued) AS queued, (SELECT count(*) FROM started) AS started;

-- name: workflow_cleanup
-- Delete one batch of finished workflows last changed longer ago than the retention; their
-- steps go with them (ON DELETE CASCADE). Step jobs are left to the pruner.
WITH doomed AS (
    SELECT id FROM {prefix}workflows
    WHERE state IN ('completed', 'failed')
      AND updated_at < now() - make_interval(secs => %(retention)s)
    ORDER BY updated_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM {prefix}workflows AS w
    WHERE w.id = ANY(ARRAY(SELECT id FROM doomed))
    RETURNING w.id
)
SELECT count(*) AS deleted FROM gone;

-- name: workflow_prune_guard
-- The workflow plugin's guard on the pruner (Plugin.prune_guard), over the finished job j: the
-- steps of a workflow that is still running are never deleted, since later steps read their
-- results. Written as a scalar subquery (never turned into a join) so that each candidate is
-- looked up by the steps' job_id index, whatever the statistics say.
(
    SELECT count(*) FROM {prefix}workflow_steps AS s
    WHERE s.job_id = j.id
      AND (SELECT w.state FROM {prefix}workflows AS w WHERE w.id = s.workflow_id)
          IN ('pending', 'running')
) = 0
