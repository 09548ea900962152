-- The raw trail is written once per price point, and two of its per-row costs bought nothing
-- (a 9,500-point batch's insert statement: ~480 ms with both, ~230 ms without, on 2 cores):
--
-- * the foreign key to `spot_pools` ran a trigger and a row lock on the pool per point (6 µs
--   each). The SEF, the table's only writer, creates a batch's pools in the same transaction
--   before inserting, and pools are never deleted;
-- * `pricing_submissions_raw_best` was how a bucket's best submission was found before
--   `pricing_client_sources` kept it. Nothing reads by it now: recomputation and the quality
--   review read the bucket's used rows through `pricing_submissions_raw_used`.
DO $$
DECLARE
    fk text;
BEGIN
    FOR fk IN SELECT conname FROM pg_constraint
               WHERE conrelid = 'pricing_submissions_raw'::regclass AND contype = 'f' AND confrelid = 'spot_pools'::regclass
    LOOP
        EXECUTE format('ALTER TABLE pricing_submissions_raw DROP CONSTRAINT %I', fk);
    END LOOP;
END $$;
DROP INDEX IF EXISTS pricing_submissions_raw_best;
