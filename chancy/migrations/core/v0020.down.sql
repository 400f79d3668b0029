DROP FUNCTION IF EXISTS {prefix}complete_jobs(uuid[], uuid[], text[], integer[], jsonb[], jsonb[], jsonb[], float8[], jsonb[], boolean);
