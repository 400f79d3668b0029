-- Pausing a schedule (Cron.pause / Cron.resume, the dashboard's pause button): a paused
-- schedule is never due; resuming moves it to its next slot after the resume.
ALTER TABLE {prefix}cron ADD COLUMN paused_at timestamptz;
