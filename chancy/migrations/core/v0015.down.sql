ALTER TABLE {prefix}jobs DROP COLUMN IF EXISTS progress;
