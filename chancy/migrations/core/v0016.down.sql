ALTER TABLE {prefix}queues DROP COLUMN IF EXISTS default_deadline;
ALTER TABLE {prefix}jobs DROP COLUMN IF EXISTS deadline;
