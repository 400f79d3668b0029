-- Chancy's cron table (any of its versions, up to 0.26) has no queue column and no index on
-- next_run: the queue is the one of the stored job, as chancy keeps it.
ALTER TABLE {prefix}cron ADD COLUMN IF NOT EXISTS queue text;
UPDATE {prefix}cron SET queue = coalesce(job->>'q', 'default') WHERE queue IS NULL;
ALTER TABLE {prefix}cron ALTER COLUMN queue SET NOT NULL;
CREATE INDEX IF NOT EXISTS {prefix}cron_next_run_idx ON {prefix}cron (next_run);

-- Pausing a schedule (Cron.pause / Cron.resume, the dashboard's pause button): a paused
-- schedule is never due; resuming moves it to its next slot after the resume.
ALTER TABLE {prefix}cron ADD COLUMN paused_at timestamptz;
