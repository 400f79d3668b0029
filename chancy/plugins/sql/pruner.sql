-- The pruner's statements. They are completed in Python with the pruner's rule, compiled by
-- chancy.rule into a fragment whose values are parameters, and the guards of installed
-- plugins: the placeholders in braces are filled in through psycopg.sql. Leader-only, fenced
-- like recovery.sql.

-- name: pruner_delete
-- Delete one batch of finished jobs matching the rule, oldest completion first, skipping rows
-- another transaction holds.
WITH doomed AS (
    SELECT j.id FROM {prefix}jobs AS j
    WHERE j.state IN ('succeeded', 'failed')
      AND ({where})
      {keep}
      AND {leader_fence}
    ORDER BY coalesce(j.completed_at, j.created_at)
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
), gone AS (
    DELETE FROM {prefix}jobs AS j
    USING doomed
    WHERE j.id = doomed.id
    RETURNING j.id
)
SELECT count(*) AS deleted FROM gone;

-- name: pruner_guard
-- One plugin's guard (Plugin.prune_guard), filled in as the delete's keep placeholder: a job
-- is deleted only where every installed plugin's guard holds.
AND ({})
