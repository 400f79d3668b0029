-- name: events_listen
LISTEN "{prefix}events";

-- name: events_ping
SELECT 1;

-- name: liveness_lock
-- Take a worker's liveness lock on the LISTEN session (held until the session ends); false
-- while another session (a dead one the server has not noticed yet) still holds it.
SELECT pg_try_advisory_lock(%(key)s::bigint) AS locked;

-- name: liveness_unlock
SELECT pg_advisory_unlock(%(key)s::bigint) AS unlocked;
