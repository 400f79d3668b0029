-- Drop the (queue, state) index Chancy's schema had (version 8). It covers every row, so each
-- push writes an entry and every claim and every completion (a state change) writes one more:
-- two index writes per job that no statement of chancy's needs (each reads through the
-- partial indexes of waiting, running and finished jobs, tests/store/test_plans.py), and
-- an index that grows with the finished jobs. Migrating down puts it back.
DROP INDEX IF EXISTS {prefix}idx_jobs_queue_state;
