-- Session liveness: each worker holds a session-level advisory lock (its liveness_key) for as
-- long as it lives; PostgreSQL releases it the moment the worker's session ends (process
-- killed, host reset), so the leader can recover the worker's jobs in seconds instead of
-- after its heartbeat timeout. lost_at records when the lock was first seen free, so a worker
-- that only reconnects (a brief drop, a purge) has a grace period to take its lock back.
-- The leader row carries the same for the leader, so a dead leader is replaced in seconds.
ALTER TABLE {prefix}workers
    ADD COLUMN liveness_key bigint,
    ADD COLUMN lost_at timestamptz;

ALTER TABLE {prefix}leader
    ADD COLUMN liveness_key bigint,
    ADD COLUMN lost_at timestamptz;
