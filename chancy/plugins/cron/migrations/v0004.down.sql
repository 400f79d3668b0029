ALTER TABLE {prefix}cron DROP COLUMN IF EXISTS paused_at;
