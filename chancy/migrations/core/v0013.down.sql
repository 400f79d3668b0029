ALTER TABLE {prefix}leader DROP COLUMN IF EXISTS lost_at, DROP COLUMN IF EXISTS liveness_key;
ALTER TABLE {prefix}workers DROP COLUMN IF EXISTS lost_at, DROP COLUMN IF EXISTS liveness_key;
