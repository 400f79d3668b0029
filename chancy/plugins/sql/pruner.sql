-- The pruner's statements. They are completed in Python with the pruner's rule, compiled by
-- chancy.rule into a fragment whose values are parameters: the WHERE placeholder in braces is
-- the only thing filled in, through psycopg.sql. Leader-only, fenced like recovery.sql.

-- name: pruner_delete
-- Delete one batch of finished jobs matching the rule, oldest completion first, skipping rows
-- another transaction holds.
WITH doomed AS (
    SELECT j.id FROM {prefix}jobs AS j
    WHERE j.state IN ('succeeded', 'failed')
      AND ({where})
      {keep}
      AND (NOT %(fenced)s OR EXISTS (
          SELECT 1 FROM {prefix}leader AS l
          WHERE l.id = 1 AND l.worker_id = %(leader)s AND l.term = %(term)s::bigint
            AND l.expires_at > now()
          FOR SHARE
      ))
    ORDER BY j.completed_at
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
), gone AS (
    DELETE FROM {prefix}jobs AS j
    USING doomed
    WHERE j.id = doomed.id
    RETURNING j.id
)
SELECT count(*) AS deleted FROM gone;

-- name: pruner_keep_workflow_steps
-- Filled in as {keep} when the workflow plugin is installed: the steps of a workflow that is
-- still running are never deleted, since later steps read their results.
AND NOT EXISTS (
    SELECT 1 FROM {prefix}workflow_steps AS s
    JOIN {prefix}workflows AS w ON w.id = s.workflow_id
    WHERE s.job_id = j.id AND w.state IN ('pending', 'running')
)
