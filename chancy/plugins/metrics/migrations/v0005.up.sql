-- Chancy 0.26's custom metrics (Metrics.increment_counter, record_gauge,
-- record_histogram_value): each series keeps the unit it was recorded in, and histograms keep
-- the smallest and largest value observed in each bucket. chancy's own series leave unit NULL.
ALTER TABLE {prefix}metrics ADD COLUMN unit text;
ALTER TABLE {prefix}metrics ADD COLUMN minimum double precision;
ALTER TABLE {prefix}metrics ADD COLUMN maximum double precision;
