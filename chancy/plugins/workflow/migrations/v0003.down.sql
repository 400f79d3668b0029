DROP TABLE IF EXISTS {prefix}workflow_steps;
DROP TABLE IF EXISTS {prefix}workflows;
