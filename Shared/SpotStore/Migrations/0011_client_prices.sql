-- Prices are resolved per client first, then across clients, so that one client cannot move
-- what another sees (the SEF's SharedResolver): a client's best submission per source type and
-- bucket, the client's own price of each bucket (and whether the shared price took it), and
-- which clients report each pool when (so a bucket knows whom to compare with).
CREATE TABLE pricing_client_sources (
    pool_id text NOT NULL REFERENCES spot_pools (id),
    time_bucket timestamptz NOT NULL CHECK (date_part('epoch', time_bucket)::bigint % 300 = 0),
    client_id uuid NOT NULL REFERENCES clients (id),
    source_type text NOT NULL CHECK (source_type IN ('primary', 'replica-automatic', 'replica-manual')),
    submission_id uuid NOT NULL,
    spot_price numeric(12, 6) NOT NULL CHECK (spot_price > 0),
    on_demand_price numeric(12, 6) CHECK (on_demand_price > 0),
    observed_at timestamptz NOT NULL,
    PRIMARY KEY (pool_id, time_bucket, client_id, source_type)
);

CREATE TABLE pricing_client_buckets (
    pool_id text NOT NULL REFERENCES spot_pools (id),
    time_bucket timestamptz NOT NULL CHECK (date_part('epoch', time_bucket)::bigint % 300 = 0),
    client_id uuid NOT NULL REFERENCES clients (id),
    spot_price numeric(12, 6) NOT NULL CHECK (spot_price > 0),
    on_demand_price numeric(12, 6) CHECK (on_demand_price > 0),
    confidence_score numeric(3, 2) NOT NULL CHECK (confidence_score BETWEEN 0 AND 1),
    source_type text NOT NULL CHECK (source_type IN ('primary', 'replica-automatic', 'replica-manual')),
    averaged_dual_source boolean NOT NULL,
    accepted boolean NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool_id, time_bucket, client_id)
);
-- a client's own latest prices (decisions trust them first)
CREATE INDEX pricing_client_buckets_own ON pricing_client_buckets (client_id, pool_id, time_bucket DESC);

CREATE TABLE pricing_pool_clients (
    pool_id text NOT NULL REFERENCES spot_pools (id),
    client_id uuid NOT NULL REFERENCES clients (id),
    first_bucket timestamptz NOT NULL,
    last_bucket timestamptz NOT NULL,
    -- when SpotGuard first received a price of the pool from the client (not back-datable)
    first_received_at timestamptz NOT NULL,
    PRIMARY KEY (pool_id, client_id)
);

-- what was submitted before: each client's best per source type (their own prices follow as
-- the SEF resolves those buckets again: new data, or the periodic scan of its window)
INSERT INTO pricing_client_sources (pool_id, time_bucket, client_id, source_type, submission_id, spot_price, on_demand_price, observed_at)
SELECT DISTINCT ON (pool_id, time_bucket, client_id, source_type)
       pool_id, time_bucket, client_id, source_type, submission_id, spot_price, on_demand_price, observed_at
  FROM pricing_submissions_raw WHERE source_type <> 'interpolated'
 ORDER BY pool_id, time_bucket, client_id, source_type, observed_at DESC, upper(submission_id::text);
INSERT INTO pricing_pool_clients (pool_id, client_id, first_bucket, last_bucket, first_received_at)
SELECT pool_id, client_id, min(time_bucket), max(time_bucket), min(received_at) FROM pricing_submissions_raw
 WHERE source_type <> 'interpolated' GROUP BY 1, 2;

-- a bucket whose clients disagreed
ALTER TABLE pricing_snapshots_clean DROP CONSTRAINT pricing_snapshots_clean_quality_flag_check;
ALTER TABLE pricing_snapshots_clean ADD CONSTRAINT pricing_snapshots_clean_quality_flag_check
    CHECK (quality_flag IN ('averaged_dual_source', 'disputed'));

CREATE OR REPLACE VIEW pricing_quality_review AS
SELECT c.quality_flag AS kind, c.pool_id, c.time_bucket AS starts_at, NULL::timestamptz AS ends_at,
       c.spot_price, c.confidence_score,
       (SELECT jsonb_agg(jsonb_build_object('source_type', r.source_type, 'spot_price', r.spot_price,
                                            'submission_id', r.submission_id, 'client_id', r.client_id) ORDER BY r.source_type)
          FROM pricing_submissions_raw r
         WHERE r.pool_id = c.pool_id AND r.time_bucket = c.time_bucket AND NOT r.is_duplicate) AS details,
       c.updated_at AS flagged_at
  FROM pricing_snapshots_clean c
 WHERE c.quality_flag IS NOT NULL
UNION ALL
SELECT 'client_price_not_taken', b.pool_id, b.time_bucket, NULL, b.spot_price, b.confidence_score,
       jsonb_build_object('client_id', b.client_id, 'source_type', b.source_type), b.updated_at
  FROM pricing_client_buckets b
 WHERE NOT b.accepted
UNION ALL
SELECT 'gap_' || g.status, g.pool_id, g.gap_start, g.gap_end, NULL, NULL,
       jsonb_build_object('duration_seconds', g.duration_seconds, 'missing_buckets', g.missing_buckets,
                          'reason', g.unfilled_reason),
       g.updated_at
  FROM pricing_gaps g
 WHERE g.status <> 'filled';
