-- The SEF data path: gap records, per-pool scan claims, scheduled jobs, the outbox, and
-- one view of everything an operator should review.

-- Every price point writes one row to each of the two tables below, so each index and
-- foreign key there costs throughput (measured: about 50 us of server time per point with
-- all of them). They keep what a query needs: the natural key as primary key (no surrogate
-- id), the pool foreign key (the SEF creates the pool in the same transaction), no foreign
-- keys to clients and agents (ingest authenticated both, and agents are only soft-deleted).
ALTER TABLE pricing_submissions_raw
    DROP CONSTRAINT pricing_submissions_raw_client_id_fkey,
    DROP CONSTRAINT pricing_submissions_raw_source_agent_id_fkey,
    DROP CONSTRAINT pricing_submissions_raw_submission_id_key,
    DROP COLUMN id,
    ADD PRIMARY KEY (submission_id);
DROP INDEX pricing_submissions_raw_received;
CREATE INDEX pricing_submissions_raw_bucket ON pricing_submissions_raw USING brin (time_bucket);
ALTER TABLE spot_price_snapshots
    DROP CONSTRAINT spot_price_snapshots_agent_id_fkey,
    DROP CONSTRAINT spot_price_snapshots_report_id_pool_id_key,
    DROP COLUMN id,
    ADD PRIMARY KEY (report_id, pool_id);
DROP INDEX spot_price_snapshots_captured;

-- A bucket is resolved from the best submission per source type (one index probe each) and
-- the rows it used so far, never by reading all of a busy bucket's submissions.
DROP INDEX pricing_submissions_raw_pool_bucket;
CREATE INDEX pricing_submissions_raw_best
    ON pricing_submissions_raw (pool_id, time_bucket, source_type, observed_at DESC, submission_id);
CREATE INDEX pricing_submissions_raw_used ON pricing_submissions_raw (pool_id, time_bucket) WHERE NOT is_duplicate;

-- Every gap over 10 minutes between measured buckets, and how it was handled.
CREATE TABLE pricing_gaps (
    pool_id text NOT NULL REFERENCES spot_pools (id),
    gap_start timestamptz NOT NULL,   -- the last measured bucket before the gap
    gap_end timestamptz,              -- the first measured bucket after it; NULL while open
    duration_seconds integer NOT NULL CHECK (duration_seconds > 0),
    missing_buckets integer NOT NULL CHECK (missing_buckets >= 0),
    status text NOT NULL CHECK (status IN ('filled', 'unfilled', 'open')),
    interpolation_method text CHECK (interpolation_method IN ('linear', 'weighted-average', 'cross-pool')),
    unfilled_reason text CHECK (unfilled_reason IN ('blackout', 'no_peer_data')),
    detected_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool_id, gap_start),
    CHECK ((status = 'open') = (gap_end IS NULL)),
    CHECK ((status = 'filled') = (interpolation_method IS NOT NULL)),
    CHECK ((status = 'unfilled') = (unfilled_reason IS NOT NULL))
);
CREATE INDEX pricing_gaps_unresolved ON pricing_gaps (detected_at) WHERE status <> 'filled';

-- The periodic gap scan, claimed per pool with FOR UPDATE SKIP LOCKED.
CREATE TABLE sef_pool_scans (
    pool_id text PRIMARY KEY REFERENCES spot_pools (id),
    next_scan_at timestamptz NOT NULL DEFAULT now(),
    last_scan_at timestamptz,
    last_scanned_by text
);
CREATE INDEX sef_pool_scans_due ON sef_pool_scans (next_scan_at);

-- Work that runs once per period however many copies of a service run.
CREATE TABLE scheduled_jobs (
    name text PRIMARY KEY,
    next_run_at timestamptz NOT NULL DEFAULT now(),
    last_started_at timestamptz,
    last_finished_at timestamptz,
    last_run_by text,
    last_result jsonb
);
INSERT INTO scheduled_jobs (name) VALUES ('sef.ml_refresh'), ('sef.quality_check');

-- Messages written in the same transaction as the state they describe; a relay publishes
-- them with confirms and deletes them (DESIGN.md principle 2).
CREATE TABLE outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id uuid NOT NULL UNIQUE,
    routing_key text NOT NULL,
    body text NOT NULL,               -- the encoded envelope (JSON)
    created_at timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz,        -- a relay's lease; an expired lease is claimed again
    claimed_by text
);
CREATE INDEX outbox_unclaimed ON outbox (id) WHERE claimed_until IS NULL;

-- What needs a human: prices averaged from disagreeing sources, and gaps not filled.
CREATE VIEW pricing_quality_review AS
SELECT 'averaged_dual_source'::text AS kind, c.pool_id, c.time_bucket AS starts_at, NULL::timestamptz AS ends_at,
       c.spot_price, c.confidence_score,
       (SELECT jsonb_agg(jsonb_build_object('source_type', r.source_type, 'spot_price', r.spot_price,
                                            'submission_id', r.submission_id) ORDER BY r.source_type)
          FROM pricing_submissions_raw r
         WHERE r.pool_id = c.pool_id AND r.time_bucket = c.time_bucket AND NOT r.is_duplicate) AS details,
       c.updated_at AS flagged_at
  FROM pricing_snapshots_clean c
 WHERE c.quality_flag = 'averaged_dual_source'
UNION ALL
SELECT 'gap_' || g.status, g.pool_id, g.gap_start, g.gap_end, NULL, NULL,
       jsonb_build_object('duration_seconds', g.duration_seconds, 'missing_buckets', g.missing_buckets,
                          'reason', g.unfilled_reason),
       g.updated_at
  FROM pricing_gaps g
 WHERE g.status <> 'filled';
