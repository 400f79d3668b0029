-- The end state of Chancy 0.26's trigger line at version 1: one row per registered trigger.
-- trigger_name is the base name of its database triggers (one per operation, named
-- trigger_name || '_' || lower(operation)); operations is a JSON array of 'INSERT', 'UPDATE'
-- and 'DELETE'; job_template is the packed Job pushed when a trigger fires.
CREATE TABLE {prefix}triggers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    table_name text NOT NULL,
    schema_name text NOT NULL DEFAULT 'public',
    trigger_name text NOT NULL,
    operations jsonb NOT NULL,
    job_template jsonb NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (schema_name, table_name, trigger_name)
);

CREATE INDEX {prefix}triggers_lookup_idx ON {prefix}triggers (schema_name, table_name, trigger_name)
    WHERE enabled = true;
