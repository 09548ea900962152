-- The SEF claims the next pool to scan with `ORDER BY next_scan_at, pool_id LIMIT 1`. Pools
-- registered together share one `next_scan_at`, and with an index on `next_scan_at` alone
-- every claim sorted the whole group: 21 ms a claim with 31,000 pools due, so a round over
-- 50,000 pools took minutes and grew with the square of the pools. An index in the claim's
-- order hands the first row over at once.
CREATE INDEX IF NOT EXISTS sef_pool_scans_due_order ON sef_pool_scans (next_scan_at, pool_id);
DROP INDEX IF EXISTS sef_pool_scans_due;
