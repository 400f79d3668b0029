-- The end state of Chancy's workflow line at version 3, in one step.
CREATE TABLE {prefix}workflows (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    state text NOT NULL,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

CREATE INDEX {prefix}workflows_state_idx ON {prefix}workflows (state);

CREATE INDEX {prefix}workflows_active_id_idx ON {prefix}workflows (id)
    WHERE state IN ('pending', 'running');

CREATE TABLE {prefix}workflow_steps (
    id serial PRIMARY KEY,
    workflow_id uuid REFERENCES {prefix}workflows (id) ON DELETE CASCADE,
    step_id text NOT NULL,
    job_data jsonb NOT NULL,
    dependencies jsonb NOT NULL,
    job_id uuid,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

CREATE INDEX {prefix}workflow_steps_workflow_id_idx ON {prefix}workflow_steps (workflow_id);

CREATE UNIQUE INDEX {prefix}workflows_steps_unique_idx
    ON {prefix}workflow_steps (workflow_id, step_id);
