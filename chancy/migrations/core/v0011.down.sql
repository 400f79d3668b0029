DROP INDEX IF EXISTS {prefix}jobs_running_queue;
DROP INDEX IF EXISTS {prefix}jobs_running;
CREATE INDEX {prefix}jobs_running ON {prefix}jobs (taken_by) WHERE state = 'running';
DROP INDEX IF EXISTS {prefix}jobs_finished;
CREATE INDEX {prefix}jobs_finished ON {prefix}jobs (completed_at)
    WHERE state IN ('succeeded', 'failed');
