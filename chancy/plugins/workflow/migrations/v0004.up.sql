-- chancy's additions. A step's state as the leader last recorded it: NULL until its job is
-- queued, 'pending' while the job has not finished, then 'succeeded' or 'failed'. The leader
-- decides readiness from it, so a workflow keeps advancing even after its finished jobs are
-- pruned. Steps of workflows made by Chancy get their state from their jobs; a job that is gone
-- was pruned, which Chancy did only to finished jobs, and a failed one would have failed its
-- workflow: it counts as succeeded unless the workflow failed.
ALTER TABLE {prefix}workflow_steps ADD COLUMN state text;

UPDATE {prefix}workflow_steps AS s
SET state = CASE
    WHEN j.state IN ('succeeded', 'failed') THEN j.state
    WHEN j.id IS NULL AND w.state = 'failed' THEN 'failed'
    WHEN j.id IS NULL THEN 'succeeded'
    ELSE 'pending'
END
FROM {prefix}workflows AS w, {prefix}workflow_steps AS s2
LEFT JOIN {prefix}jobs AS j ON j.id = s2.job_id
WHERE s.id = s2.id AND w.id = s.workflow_id AND s.job_id IS NOT NULL;

-- Steps by job id: the leader looks up the jobs a job.finished notification names, and the
-- pruner can tell the jobs of unfinished workflows' steps.
CREATE INDEX {prefix}workflow_steps_job_id_idx ON {prefix}workflow_steps (job_id)
    WHERE job_id IS NOT NULL;
