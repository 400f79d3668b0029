CREATE INDEX IF NOT EXISTS {prefix}idx_jobs_queue_state ON {prefix}jobs (queue, state);
