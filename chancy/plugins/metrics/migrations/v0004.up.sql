-- Aggregated metrics: one row per metric, resolution, time bucket and series (queue, func).
-- Chancy 0.26 kept a differently shaped table under the same name (and, in some versions, a
-- definitions table); its rows are rolled-up samples that are safe to drop.
DROP TABLE IF EXISTS {prefix}metrics;
DROP TABLE IF EXISTS {prefix}metric_definitions;

CREATE TABLE {prefix}metrics (
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('counter', 'gauge', 'histogram')),
    resolution text NOT NULL,
    bucket timestamptz NOT NULL,
    queue text NOT NULL DEFAULT '',
    func text NOT NULL DEFAULT '',
    -- counter: the increments; histogram: observations; gauge: samples taken
    count bigint NOT NULL DEFAULT 0,
    -- histogram: sum of observed values; gauge: the last sampled value
    total double precision NOT NULL DEFAULT 0,
    -- histogram only: observations per bucket (non-cumulative, last = above every bound)
    histogram bigint[],
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, resolution, bucket, queue, func)
);

-- Retention deletes old buckets of one resolution.
CREATE INDEX {prefix}metrics_expiry ON {prefix}metrics (resolution, bucket);
