-- Deadlines: a job not started by its deadline is never started (the claim fails it), and a
-- queue's default_deadline (seconds after the job is due) applies to jobs pushed without one.
ALTER TABLE {prefix}jobs ADD COLUMN deadline timestamptz;
ALTER TABLE {prefix}queues ADD COLUMN default_deadline double precision;
