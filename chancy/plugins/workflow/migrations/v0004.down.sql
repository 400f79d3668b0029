DROP INDEX IF EXISTS {prefix}workflow_steps_job_id_idx;
ALTER TABLE {prefix}workflow_steps DROP COLUMN IF EXISTS state;
