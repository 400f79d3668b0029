DROP INDEX IF EXISTS {prefix}workflows_finished_idx;
