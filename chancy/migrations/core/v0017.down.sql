DROP FUNCTION IF EXISTS {prefix}claim_jobs(text, integer, text);
