-- name: events_listen
LISTEN "{prefix}events";

-- name: events_ping
SELECT 1;
