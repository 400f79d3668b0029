DROP TABLE IF EXISTS {prefix}batch_jobs;
DROP TABLE IF EXISTS {prefix}batches;
