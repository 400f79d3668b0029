-- Dropping the function the database triggers run drops those triggers with it (CASCADE
-- follows only their dependency on it), so no trigger is left behind to fail the user's
-- writes once the table below is gone. {prefix}trigger_handler is the function Chancy 0.26
-- (and version 1 of this line) installs.
DROP FUNCTION IF EXISTS {prefix}trigger_handler() CASCADE;

DROP TABLE IF EXISTS {prefix}triggers;
