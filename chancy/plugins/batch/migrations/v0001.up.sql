-- One row per batch: its callbacks (packed jobs, NULL when not given), how many jobs it has,
-- how many of them the leader has not recorded yet (remaining), and the outcomes it recorded.
-- finished_at is set in the transaction that pushes the callbacks, once (see batch.sql).
CREATE TABLE {prefix}batches (
    id uuid PRIMARY KEY,
    total integer NOT NULL DEFAULT 0,
    remaining integer NOT NULL DEFAULT 0,
    succeeded integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0,
    on_success jsonb,
    on_failure jsonb,
    on_finish jsonb,
    callbacks jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- Open batches, in id order: the leader's full pass pages through them.
CREATE INDEX {prefix}batches_open_idx ON {prefix}batches (id) WHERE finished_at IS NULL;

-- Finished batches by finishing time: the cleanup deletes the oldest through an index range.
CREATE INDEX {prefix}batches_finished_idx ON {prefix}batches (finished_at)
    WHERE finished_at IS NOT NULL;

-- The jobs of open batches whose outcome the leader has not recorded yet. A row is deleted
-- when its job's outcome is counted on the batch row, so this table holds only unfinished
-- work: a closed batch has no rows here. The job id is the key (a job belongs to at most
-- one batch). No foreign keys: a check per row would double the cost of adding 100,000
-- members, and the batch row is written first in the same transaction anyway.
CREATE TABLE {prefix}batch_jobs (
    job_id uuid PRIMARY KEY,
    batch_id uuid NOT NULL
);

CREATE INDEX {prefix}batch_jobs_batch_idx ON {prefix}batch_jobs (batch_id, job_id);
