DROP TABLE IF EXISTS {prefix}metrics;
