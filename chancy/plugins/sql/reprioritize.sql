-- Reprioritize's statement, completed in Python with its rule like pruner.sql. Leader-only,
-- fenced like recovery.sql.

-- name: reprioritize_bump
-- Raise the priority of one batch of waiting jobs matching the rule, in id order after
-- the last id of the previous batch (keyset pagination, so a run visits each job once), skipping locked rows. The new
-- priority is clamped to the int range.
WITH picked AS (
    SELECT j.id FROM {prefix}jobs AS j
    WHERE j.state IN ('pending', 'retrying')
      AND (%(after)s::uuid IS NULL OR j.id > %(after)s::uuid)
      AND ({where})
      AND {leader_fence}
    ORDER BY j.id
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
), bumped AS (
    UPDATE {prefix}jobs AS j
    SET priority = greatest(-2147483648, least(2147483647,
        j.priority::bigint + %(increase)s::bigint))::integer
    FROM picked
    WHERE j.id = picked.id
    RETURNING j.id
)
SELECT
    (SELECT count(*) FROM bumped) AS bumped,
    (SELECT count(*) FROM picked) AS picked,
    (SELECT id FROM picked ORDER BY id DESC LIMIT 1) AS last_id;
