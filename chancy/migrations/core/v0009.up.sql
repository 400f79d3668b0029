-- chancy's own additions: stored results, counted recoveries, leader terms, a small claim
-- index, fractional polling intervals and room for HOT updates on the hot jobs table.
ALTER TABLE {prefix}jobs
    ADD COLUMN result jsonb,
    ADD COLUMN recoveries integer NOT NULL DEFAULT 0;

ALTER TABLE {prefix}jobs SET (fillfactor = 80);

-- The claim reads waiting jobs of one queue in priority then id order; finished jobs, the
-- bulk of a busy table, are not in this index at all.
CREATE INDEX {prefix}jobs_claim ON {prefix}jobs (queue, priority DESC, id)
    WHERE state IN ('pending', 'retrying');

-- Recovery looks for running jobs by the worker that holds them.
CREATE INDEX {prefix}jobs_running ON {prefix}jobs (taken_by)
    WHERE state = 'running';

-- The pruner deletes finished jobs oldest first.
CREATE INDEX {prefix}jobs_finished ON {prefix}jobs (completed_at)
    WHERE state IN ('succeeded', 'failed');

DROP INDEX IF EXISTS {prefix}idx_jobs_queue_state;

ALTER TABLE {prefix}queues ALTER COLUMN polling_interval TYPE double precision;

ALTER TABLE {prefix}leader ADD COLUMN term bigint NOT NULL DEFAULT 0;

ALTER TABLE {prefix}workers
    ADD COLUMN started_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN hostname text,
    ADD COLUMN pid integer,
    ADD COLUMN version text;
