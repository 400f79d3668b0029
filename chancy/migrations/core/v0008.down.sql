DROP TABLE IF EXISTS {prefix}leader;
DROP TABLE IF EXISTS {prefix}workers;
DROP TABLE IF EXISTS {prefix}queues;
DROP TABLE IF EXISTS {prefix}jobs;
