-- claim_jobs (v0017) also runs with sequential scans off. With bitmap scans off, the claim's
-- UPDATE finds the picked rows (id = ANY of the picked ids) with an index scan of the primary
-- key or a sequential scan of the whole table, and the planner takes the scan when its
-- statistics make the table look small: a never-analysed table of 10,000 rows, emptied and
-- refilled, claimed at 5.3 ms a statement (the scan read every row) where the lookup takes
-- 0.2 ms, and the process executor drained 30% slower. Off, the scan is only a last resort
-- (PostgreSQL still uses it where no index serves), so every lookup goes through an index
-- whatever the statistics say (tests/store/test_plans.py, tests/store/test_claim_function.py).
ALTER FUNCTION {prefix}claim_jobs(text, integer, text) SET enable_seqscan = off;
