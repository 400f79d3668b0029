-- The end state of Chancy's workflow line at version 3, in one step. Tables that Chancy made at
-- its version 1 or 2 (Chancy 0.20 to 0.25) are kept and brought to version 3: steps in jsonb
-- (version 2) and the index of active workflows (version 3).
CREATE TABLE IF NOT EXISTS {prefix}workflows (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    state text NOT NULL,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

CREATE INDEX IF NOT EXISTS {prefix}workflows_state_idx ON {prefix}workflows (state);

CREATE INDEX IF NOT EXISTS {prefix}workflows_active_id_idx ON {prefix}workflows (id)
    WHERE state IN ('pending', 'running');

CREATE TABLE IF NOT EXISTS {prefix}workflow_steps (
    id serial PRIMARY KEY,
    workflow_id uuid REFERENCES {prefix}workflows (id) ON DELETE CASCADE,
    step_id text NOT NULL,
    job_data jsonb NOT NULL,
    dependencies jsonb NOT NULL,
    job_id uuid,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

CREATE INDEX IF NOT EXISTS {prefix}workflow_steps_workflow_id_idx ON {prefix}workflow_steps (workflow_id);

CREATE UNIQUE INDEX IF NOT EXISTS {prefix}workflows_steps_unique_idx
    ON {prefix}workflow_steps (workflow_id, step_id);

ALTER TABLE {prefix}workflow_steps
    ALTER COLUMN job_data TYPE jsonb USING job_data::jsonb,
    ALTER COLUMN dependencies TYPE jsonb USING dependencies::jsonb;
