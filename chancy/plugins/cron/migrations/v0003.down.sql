DROP TABLE IF EXISTS {prefix}cron;
