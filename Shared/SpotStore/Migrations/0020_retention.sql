-- Bounded storage (docs/operations/retention.md).
--
-- The per-point trail is one table partitioned by day, so that its retention drops whole days
-- instead of deleting rows: `pricing_submissions_raw` now also keeps each point's report id, and
-- `spot_price_snapshots` (the same facts under the seeds' name, read by nobody in the product) is
-- a view over it. Identity is (submission_id, time_bucket): a partitioned table's keys include
-- its partition column, and a resent submission always falls in the bucket it fell in before.
DROP VIEW pricing_quality_review;  -- made again below, over the new table
ALTER TABLE pricing_submissions_raw RENAME TO pricing_submissions_raw_unpartitioned;
ALTER INDEX pricing_submissions_raw_pkey RENAME TO pricing_submissions_raw_unpartitioned_pkey;
ALTER INDEX pricing_submissions_raw_best RENAME TO pricing_submissions_raw_unpartitioned_best;
ALTER INDEX pricing_submissions_raw_used RENAME TO pricing_submissions_raw_unpartitioned_used;
ALTER INDEX pricing_submissions_raw_bucket RENAME TO pricing_submissions_raw_unpartitioned_bucket;

CREATE TABLE pricing_submissions_raw (
    submission_id uuid NOT NULL,
    client_id uuid NOT NULL,
    source_agent_id uuid,
    source_instance_id text,
    source_type text NOT NULL CHECK (source_type IN ('primary', 'replica-automatic', 'replica-manual', 'interpolated')),
    pool_id text NOT NULL REFERENCES spot_pools (id),
    spot_price numeric(12, 6) NOT NULL CHECK (spot_price > 0),
    on_demand_price numeric(12, 6) CHECK (on_demand_price > 0),
    observed_at timestamptz NOT NULL,
    submitted_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    time_bucket timestamptz NOT NULL CHECK (date_part('epoch', time_bucket)::bigint % 300 = 0),
    is_duplicate boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    report_id uuid,
    PRIMARY KEY (submission_id, time_bucket)
) PARTITION BY RANGE (time_bucket);
CREATE INDEX pricing_submissions_raw_best
    ON pricing_submissions_raw (pool_id, time_bucket, source_type, observed_at DESC, submission_id);
CREATE INDEX pricing_submissions_raw_used ON pricing_submissions_raw (pool_id, time_bucket) WHERE NOT is_duplicate;

-- The partitions of the given UTC days that do not exist yet, created and attached (attaching
-- takes a lock that does not stop inserts into the other days); returns how many were made.
-- The SEF calls it before a batch with a day it has not seen, the retention job for the days
-- ahead, so no insert ever finds its day missing.
CREATE FUNCTION pricing_raw_partitions(days date[]) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date;
    part text;
    made integer := 0;
BEGIN
    FOR d IN SELECT DISTINCT x FROM unnest(days) AS x ORDER BY 1 LOOP
        part := 'pricing_submissions_raw_' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        -- two copies seeing the same new day: the second finds it made
        PERFORM pg_advisory_xact_lock(hashtext('pricing_raw_partitions'));
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I (LIKE pricing_submissions_raw INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        EXECUTE format('ALTER TABLE pricing_submissions_raw ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part,
                       d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
        made := made + 1;
    END LOOP;
    RETURN made;
END $$;

SELECT pricing_raw_partitions(array_agg(DISTINCT (time_bucket AT TIME ZONE 'UTC')::date))
  FROM pricing_submissions_raw_unpartitioned;
SELECT pricing_raw_partitions(ARRAY(SELECT (now() AT TIME ZONE 'UTC')::date + i FROM generate_series(0, 2) AS i));
INSERT INTO pricing_submissions_raw (submission_id, client_id, source_agent_id, source_instance_id, source_type, pool_id,
    spot_price, on_demand_price, observed_at, submitted_at, received_at, time_bucket, is_duplicate, created_at)
SELECT submission_id, client_id, source_agent_id, source_instance_id, source_type, pool_id,
       spot_price, on_demand_price, observed_at, submitted_at, received_at, time_bucket, is_duplicate, created_at
  FROM pricing_submissions_raw_unpartitioned;
DROP TABLE pricing_submissions_raw_unpartitioned;

CREATE VIEW pricing_quality_review AS
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

DROP TABLE spot_price_snapshots;
CREATE VIEW spot_price_snapshots AS
SELECT pool_id, spot_price AS price, on_demand_price, observed_at AS captured_at, report_id, source_agent_id AS agent_id,
       received_at AS created_at
  FROM pricing_submissions_raw;

-- How long each kind of row is kept is the services' configuration; the jobs that apply it are
-- claimed like every periodic job.
INSERT INTO scheduled_jobs (name) VALUES ('sef.retention'), ('notifier.retention'), ('decisions.retention');
