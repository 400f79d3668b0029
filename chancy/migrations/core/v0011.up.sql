-- Indexes that let every statement on a hot or periodic path find its rows by an index
-- condition, whatever the statistics say (tests/store/test_plans.py).
--
-- Each index of running jobs carries a predicate on its own key column as well as the state,
-- so that only a statement that constrains that column can use it: a statement about a
-- queue's running jobs never reads the whole index by worker, nor the other way round (with
-- statistics that say nothing runs, the planner believes either one is empty and free).
DROP INDEX IF EXISTS {prefix}jobs_running;
CREATE INDEX {prefix}jobs_running ON {prefix}jobs (taken_by)
    WHERE state = 'running' AND taken_by IS NOT NULL;

-- Running jobs by queue (and key): flow-control claims count a queue's (or a key's) running
-- jobs, and the dashboard shows them.
CREATE INDEX {prefix}jobs_running_queue ON {prefix}jobs (queue, partition_key)
    WHERE state = 'running' AND queue IS NOT NULL;

-- Finished jobs by the age the pruner's rule measures (JobRules.Age: completion time), so a
-- batch of the oldest is an index range, not a walk of every finished job the rule skips.
DROP INDEX IF EXISTS {prefix}jobs_finished;
CREATE INDEX {prefix}jobs_finished ON {prefix}jobs ((coalesce(completed_at, created_at)))
    WHERE state IN ('succeeded', 'failed');
