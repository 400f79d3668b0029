-- Progress of running jobs (QueuedJob.report_progress): the latest report, as
-- {"fraction", "message", "data", "at"}, written by the worker a few times a second and kept
-- across retries and recoveries, so a new attempt can resume from the last "data". NULL for
-- jobs that never report, which then cost nothing (no write, no storage).
ALTER TABLE {prefix}jobs ADD COLUMN progress jsonb;
