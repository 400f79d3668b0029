-- Finished workflows by last change: the leader's cleanup deletes the oldest in batches
-- through an index range instead of reading every workflow (tests/store/test_plans.py).
CREATE INDEX {prefix}workflows_finished_idx ON {prefix}workflows (updated_at)
    WHERE state IN ('completed', 'failed');
