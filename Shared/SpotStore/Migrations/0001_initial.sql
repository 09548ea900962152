-- SpotGuard data model, version 1: the tables of seeds 004 and 000 plus those seed 001 lists as
-- missing, under one naming scheme.
--
-- Conventions (settling the seeds' inconsistencies):
--   * SpotGuard's own ids are uuid; AWS ids (instances, AMIs) and pool ids are text.
--   * Pools are named `<instance_type>.<az>` (t3.medium.ap-south-1a) everywhere.
--   * One spelling per concept: on_demand_price (never ondemand_price), termination-notice
--     (never instance-termination), the switches table (never instance_switches).
--   * Every time is timestamptz; every price numeric(12,6) in $/hour; every enumerated column
--     has a CHECK constraint; every idempotent write has a natural unique key.

CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- Clients: API tokens are `sgt_<token_key_id>_<secret>`; only SHA-256(secret) is stored, the
-- key id finds the row and the digest is compared in constant time.
CREATE TABLE clients (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    email text CHECK (email IS NULL OR (length(email) <= 255 AND email LIKE '%_@_%')),
    token_key_id text NOT NULL UNIQUE CHECK (token_key_id ~ '^[a-z0-9]{16}$'),
    token_hash bytea NOT NULL CHECK (length(token_hash) = 32),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER clients_updated_at BEFORE UPDATE ON clients FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE spot_pools (
    id text PRIMARY KEY,
    pool_name text NOT NULL,
    instance_type text NOT NULL CHECK (instance_type ~ '^[a-z][a-z0-9-]*\.[a-z0-9]+$'),
    region text NOT NULL CHECK (region ~ '^[a-z]{2}(-gov)?-[a-z]+-[0-9]{1,2}$'),
    az text NOT NULL CHECK (az ~ '^[a-z]{2}(-gov)?-[a-z]+-[0-9]{1,2}[a-z]$' AND left(az, length(region)) = region),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (id = instance_type || '.' || az),
    UNIQUE (instance_type, region, az)
);
CREATE INDEX spot_pools_type_region ON spot_pools (instance_type, region);
CREATE TRIGGER spot_pools_updated_at BEFORE UPDATE ON spot_pools FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE agents (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL REFERENCES clients (id),
    logical_agent_id text NOT NULL CHECK (length(logical_agent_id) BETWEEN 1 AND 255),
    instance_id text,
    instance_type text,
    region text,
    az text,
    ami_id text,
    current_mode text CHECK (current_mode IN ('spot', 'ondemand')),
    current_pool_id text REFERENCES spot_pools (id),
    status text NOT NULL DEFAULT 'online' CHECK (status IN ('online', 'offline', 'switching', 'deleted')),
    enabled boolean NOT NULL DEFAULT true,
    agent_version text,
    hostname text,
    private_ip inet,
    public_ip inet,
    -- Modes. Manual replicas and the automatic modes exclude each other (seed 004); the
    -- constraint below is the last line of defence behind the API's 409.
    auto_switch_enabled boolean NOT NULL DEFAULT true,
    manual_replica_enabled boolean NOT NULL DEFAULT false,
    auto_terminate_enabled boolean NOT NULL DEFAULT true,
    terminate_wait_seconds integer NOT NULL DEFAULT 1800 CHECK (terminate_wait_seconds BETWEEN 0 AND 86400),
    decision_engine text NOT NULL DEFAULT 'rules' CHECK (decision_engine IN ('rules', 'learned')),
    replica_count integer NOT NULL DEFAULT 0 CHECK (replica_count >= 0),
    current_replica_id uuid,
    last_heartbeat_at timestamptz,
    last_interruption_signal text CHECK (last_interruption_signal IN ('rebalance-recommendation', 'termination-notice')),
    last_failover_at timestamptz,
    instance_count integer NOT NULL DEFAULT 0 CHECK (instance_count >= 0),
    installed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (client_id, logical_agent_id),
    CONSTRAINT agents_manual_excludes_auto
        CHECK (NOT (manual_replica_enabled AND (auto_switch_enabled OR auto_terminate_enabled)))
);
CREATE INDEX agents_client_status ON agents (client_id, status);
CREATE INDEX agents_instance ON agents (instance_id);
CREATE INDEX agents_heartbeat ON agents (last_heartbeat_at) WHERE status = 'online';
CREATE INDEX agents_manual_replica ON agents (id) WHERE manual_replica_enabled;
CREATE TRIGGER agents_updated_at BEFORE UPDATE ON agents FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE instances (
    id text PRIMARY KEY CHECK (id ~ '^i-[0-9a-f]{8,17}$'),
    client_id uuid NOT NULL REFERENCES clients (id),
    agent_id uuid REFERENCES agents (id),
    instance_type text,
    region text,
    az text,
    ami_id text,
    current_mode text CHECK (current_mode IN ('spot', 'ondemand')),
    current_pool_id text REFERENCES spot_pools (id),
    spot_price numeric(12, 6) CHECK (spot_price > 0),
    on_demand_price numeric(12, 6) CHECK (on_demand_price > 0),
    baseline_on_demand_price numeric(12, 6) CHECK (baseline_on_demand_price > 0),
    is_active boolean NOT NULL DEFAULT true,
    installed_at timestamptz,
    last_switch_at timestamptz,
    terminated_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (is_active OR terminated_at IS NOT NULL)
);
CREATE INDEX instances_client_active ON instances (client_id, is_active);
CREATE INDEX instances_agent ON instances (agent_id);
CREATE INDEX instances_mode ON instances (current_mode);
CREATE TRIGGER instances_updated_at BEFORE UPDATE ON instances FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE replica_instances (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id uuid NOT NULL REFERENCES agents (id),
    instance_id text,
    replica_type text NOT NULL CHECK (replica_type IN ('manual', 'automatic-rebalance', 'automatic-termination')),
    pool_id text REFERENCES spot_pools (id),
    instance_type text,
    region text,
    az text,
    status text NOT NULL DEFAULT 'launching'
        CHECK (status IN ('launching', 'syncing', 'ready', 'promoted', 'terminated', 'failed')),
    sync_status text NOT NULL DEFAULT 'initializing'
        CHECK (sync_status IN ('initializing', 'syncing', 'synced', 'out-of-sync')),
    state_transfer_progress numeric(5, 2) NOT NULL DEFAULT 0 CHECK (state_transfer_progress BETWEEN 0 AND 100),
    sync_latency_ms integer CHECK (sync_latency_ms >= 0),
    last_sync_at timestamptz,
    is_active boolean NOT NULL DEFAULT true,
    created_by text NOT NULL DEFAULT 'coordinator' CHECK (created_by IN ('user', 'coordinator', 'system')),
    created_by_user text,
    parent_instance_id text,
    hourly_cost numeric(12, 6) CHECK (hourly_cost >= 0),
    failure_reason text,
    launched_at timestamptz,
    ready_at timestamptz,
    promoted_at timestamptz,
    terminated_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (is_active = (status IN ('launching', 'syncing', 'ready')))
);
CREATE INDEX replica_instances_agent_active ON replica_instances (agent_id, is_active);
CREATE INDEX replica_instances_status ON replica_instances (status);
CREATE INDEX replica_instances_type ON replica_instances (replica_type);
-- Exactly one active manual replica per agent, whatever number of coordinators run.
CREATE UNIQUE INDEX replica_instances_one_manual ON replica_instances (agent_id) WHERE replica_type = 'manual' AND is_active;
CREATE TRIGGER replica_instances_updated_at BEFORE UPDATE ON replica_instances FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE agents ADD CONSTRAINT agents_current_replica FOREIGN KEY (current_replica_id) REFERENCES replica_instances (id);

-- Prices as agents captured them (seed 004, pattern 2). report_id makes a redelivered report a no-op.
CREATE TABLE spot_price_snapshots (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pool_id text NOT NULL REFERENCES spot_pools (id),
    price numeric(12, 6) NOT NULL CHECK (price > 0),
    on_demand_price numeric(12, 6) CHECK (on_demand_price > 0),
    captured_at timestamptz NOT NULL,
    report_id uuid NOT NULL,
    agent_id uuid REFERENCES agents (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (report_id, pool_id)
);
CREATE INDEX spot_price_snapshots_pool_time ON spot_price_snapshots (pool_id, captured_at DESC);
CREATE INDEX spot_price_snapshots_captured ON spot_price_snapshots (captured_at);

-- Every submission, for the audit trail (seed 000). The SEF marks the losers of a bucket.
CREATE TABLE pricing_submissions_raw (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    submission_id uuid NOT NULL UNIQUE,
    client_id uuid NOT NULL REFERENCES clients (id),
    source_agent_id uuid REFERENCES agents (id),
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
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pricing_submissions_raw_pool_bucket ON pricing_submissions_raw (pool_id, time_bucket);
CREATE INDEX pricing_submissions_raw_received ON pricing_submissions_raw (received_at);

-- The authoritative price per pool and 5-minute bucket.
CREATE TABLE pricing_snapshots_clean (
    pool_id text NOT NULL REFERENCES spot_pools (id),
    time_bucket timestamptz NOT NULL CHECK (date_part('epoch', time_bucket)::bigint % 300 = 0),
    spot_price numeric(12, 6) NOT NULL CHECK (spot_price > 0),
    on_demand_price numeric(12, 6) CHECK (on_demand_price > 0),
    confidence_score numeric(3, 2) NOT NULL CHECK (confidence_score BETWEEN 0 AND 1),
    data_source text NOT NULL CHECK (data_source IN ('measured', 'interpolated')),
    source_type text NOT NULL CHECK (source_type IN ('primary', 'replica-automatic', 'replica-manual', 'interpolated')),
    interpolation_method text CHECK (interpolation_method IN ('linear', 'weighted-average', 'cross-pool')),
    quality_flag text CHECK (quality_flag IN ('averaged_dual_source')),
    submission_count integer NOT NULL DEFAULT 1 CHECK (submission_count >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool_id, time_bucket),
    CHECK ((data_source = 'interpolated') = (interpolation_method IS NOT NULL)),
    CHECK ((data_source = 'interpolated') = (source_type = 'interpolated'))
);
CREATE INDEX pricing_snapshots_clean_bucket ON pricing_snapshots_clean (time_bucket);
CREATE INDEX pricing_snapshots_clean_flagged ON pricing_snapshots_clean (time_bucket) WHERE quality_flag IS NOT NULL;
CREATE TRIGGER pricing_snapshots_clean_updated_at BEFORE UPDATE ON pricing_snapshots_clean FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- How each gap was filled (seed 000): a transparent record beside the clean row.
CREATE TABLE pricing_snapshots_interpolated (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pool_id text NOT NULL REFERENCES spot_pools (id),
    time_bucket timestamptz NOT NULL,
    interpolation_method text NOT NULL CHECK (interpolation_method IN ('linear', 'weighted-average', 'cross-pool')),
    gap_start timestamptz NOT NULL,
    gap_end timestamptz NOT NULL CHECK (gap_end > gap_start),
    price_before numeric(12, 6) NOT NULL CHECK (price_before > 0),
    price_after numeric(12, 6) NOT NULL CHECK (price_after > 0),
    interpolated_price numeric(12, 6) NOT NULL CHECK (interpolated_price > 0),
    confidence_score numeric(3, 2) NOT NULL CHECK (confidence_score BETWEEN 0 AND 1),
    peer_pool_ids text[],
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (pool_id, time_bucket)
);

-- High-confidence training data with features (seed 000, ML dataset refresh).
CREATE TABLE pricing_snapshots_ml (
    pool_id text NOT NULL REFERENCES spot_pools (id),
    time_bucket timestamptz NOT NULL,
    spot_price numeric(12, 6) NOT NULL CHECK (spot_price > 0),
    on_demand_price numeric(12, 6) CHECK (on_demand_price > 0),
    confidence_score numeric(3, 2) NOT NULL CHECK (confidence_score >= 0.95 AND confidence_score <= 1),
    price_change_1h double precision,
    price_change_24h double precision,
    price_volatility_6h double precision,
    pool_rank_by_price integer CHECK (pool_rank_by_price >= 1),
    hour_of_day smallint CHECK (hour_of_day BETWEEN 0 AND 23),
    day_of_week smallint CHECK (day_of_week BETWEEN 0 AND 6),
    refreshed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool_id, time_bucket)
);

-- Commands to agents, long-polled by them (seed 004, pattern 3).
CREATE TABLE commands (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL REFERENCES clients (id),
    agent_id uuid NOT NULL REFERENCES agents (id),
    command_type text NOT NULL CHECK (command_type IN ('launch_replica', 'promote', 'terminate', 'switch', 'snapshot')),
    payload jsonb NOT NULL DEFAULT '{}',
    target_mode text CHECK (target_mode IN ('spot', 'ondemand')),
    target_pool_id text REFERENCES spot_pools (id),
    terminate_wait_seconds integer CHECK (terminate_wait_seconds BETWEEN 0 AND 86400),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'succeeded', 'failed', 'expired', 'cancelled')),
    priority smallint NOT NULL DEFAULT 0,
    issued_by text NOT NULL CHECK (issued_by IN ('user', 'decisions', 'replicas', 'system')),
    idempotency_key text UNIQUE,
    result jsonb,
    error_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    completed_at timestamptz,
    expires_at timestamptz,
    CHECK (command_type <> 'switch' OR target_mode IS NOT NULL)
);
CREATE INDEX commands_agent_pending ON commands (agent_id, priority DESC, created_at) WHERE status IN ('pending', 'delivered');
CREATE INDEX commands_client_time ON commands (client_id, created_at DESC);

-- Every instance switch, with prices and where they came from (seeds 004 and 000).
CREATE TABLE switches (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL REFERENCES clients (id),
    agent_id uuid NOT NULL REFERENCES agents (id),
    command_id uuid REFERENCES commands (id),
    report_id uuid UNIQUE,
    old_instance_id text,
    old_instance_type text,
    old_region text,
    old_az text,
    old_mode text CHECK (old_mode IN ('spot', 'ondemand')),
    old_pool_id text REFERENCES spot_pools (id),
    old_ami_id text,
    new_instance_id text,
    new_instance_type text,
    new_region text,
    new_az text,
    new_mode text CHECK (new_mode IN ('spot', 'ondemand')),
    new_pool_id text REFERENCES spot_pools (id),
    new_ami_id text,
    on_demand_price numeric(12, 6) CHECK (on_demand_price > 0),
    old_spot_price numeric(12, 6) CHECK (old_spot_price > 0),
    new_spot_price numeric(12, 6) CHECK (new_spot_price > 0),
    old_price_confidence numeric(3, 2) CHECK (old_price_confidence BETWEEN 0 AND 1),
    new_price_confidence numeric(3, 2) CHECK (new_price_confidence BETWEEN 0 AND 1),
    old_price_data_source text CHECK (old_price_data_source IN ('measured', 'interpolated', 'reported')),
    new_price_data_source text CHECK (new_price_data_source IN ('measured', 'interpolated', 'reported')),
    savings_impact numeric(12, 6),
    savings_confidence text CHECK (savings_confidence IN ('high', 'medium', 'low', 'unavailable')),
    event_trigger text NOT NULL CHECK (event_trigger IN ('auto_switch', 'manual', 'emergency', 'rebalance', 'failover')),
    timing_data jsonb,
    initiated_at timestamptz,
    ami_created_at timestamptz,
    instance_launched_at timestamptz,
    instance_ready_at timestamptz,
    old_terminated_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX switches_client_time ON switches (client_id, initiated_at DESC);
CREATE INDEX switches_agent ON switches (agent_id, initiated_at DESC);
CREATE INDEX switches_old_instance ON switches (old_instance_id);
CREATE INDEX switches_new_instance ON switches (new_instance_id);

CREATE TABLE spot_interruption_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id uuid NOT NULL REFERENCES agents (id),
    instance_id text,
    signal_type text NOT NULL CHECK (signal_type IN ('rebalance-recommendation', 'termination-notice')),
    signal_time timestamptz NOT NULL,
    termination_time timestamptz,
    detected_at timestamptz NOT NULL DEFAULT now(),
    risk_score numeric(4, 3) CHECK (risk_score BETWEEN 0 AND 1),
    response_action text CHECK (response_action IN (
        'recorded', 'replica_created', 'replica_promoted', 'emergency_snapshot_required', 'replica_expired', 'none')),
    replica_id uuid REFERENCES replica_instances (id),
    failover_completed boolean NOT NULL DEFAULT false,
    failover_completed_at timestamptz,
    failover_time_ms integer CHECK (failover_time_ms >= 0),
    success boolean,
    error_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- an agent reporting the same signal twice (retry, redelivery) records it once
    UNIQUE (agent_id, signal_type, signal_time),
    CHECK (NOT failover_completed OR failover_completed_at IS NOT NULL)
);
CREATE INDEX spot_interruption_events_agent_time ON spot_interruption_events (agent_id, detected_at DESC);
CREATE INDEX spot_interruption_events_signal ON spot_interruption_events (signal_type, detected_at DESC);

CREATE TABLE notifications (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id uuid REFERENCES clients (id),
    agent_id uuid REFERENCES agents (id),
    severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    kind text NOT NULL,
    title text NOT NULL,
    message text NOT NULL,
    dedup_key text UNIQUE,
    is_read boolean NOT NULL DEFAULT false,
    delivery_status text NOT NULL DEFAULT 'pending' CHECK (delivery_status IN ('pending', 'delivered', 'failed', 'not_applicable')),
    delivery_attempts integer NOT NULL DEFAULT 0 CHECK (delivery_attempts >= 0),
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_client_time ON notifications (client_id, created_at DESC);
CREATE INDEX notifications_unread ON notifications (client_id) WHERE NOT is_read;
CREATE INDEX notifications_undelivered ON notifications (created_at) WHERE delivery_status = 'pending';

CREATE TABLE system_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type text NOT NULL,
    severity text NOT NULL DEFAULT 'info' CHECK (severity IN ('debug', 'info', 'warning', 'error', 'critical')),
    component text NOT NULL,
    client_id uuid REFERENCES clients (id),
    agent_id uuid REFERENCES agents (id),
    message text NOT NULL,
    details jsonb,
    dedup_key text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX system_events_time ON system_events (created_at DESC);
CREATE INDEX system_events_agent_time ON system_events (agent_id, created_at DESC);
CREATE INDEX system_events_type_time ON system_events (event_type, created_at DESC);

-- The ledger of switch decisions (seed 001's agent_decision_history).
CREATE TABLE agent_decision_history (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id uuid NOT NULL REFERENCES agents (id),
    client_id uuid NOT NULL REFERENCES clients (id),
    engine text NOT NULL CHECK (engine IN ('rules', 'learned')),
    decision text NOT NULL CHECK (decision IN ('stay', 'switch_pool', 'to_spot', 'to_on_demand')),
    current_pool_id text REFERENCES spot_pools (id),
    target_pool_id text REFERENCES spot_pools (id),
    target_mode text CHECK (target_mode IN ('spot', 'ondemand')),
    inputs jsonb NOT NULL,
    scores jsonb NOT NULL,
    expected_savings_per_hour numeric(12, 6),
    reason text NOT NULL,
    command_id uuid REFERENCES commands (id),
    decided_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_decision_history_agent_time ON agent_decision_history (agent_id, decided_at DESC);
CREATE INDEX agent_decision_history_client_time ON agent_decision_history (client_id, decided_at DESC);

-- Tables seed 001 lists as missing.

CREATE TABLE cleanup_logs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL REFERENCES clients (id),
    agent_id uuid REFERENCES agents (id),
    cleanup_type text NOT NULL CHECK (cleanup_type IN ('snapshots', 'images', 'instances', 'replicas', 'volumes')),
    status text NOT NULL CHECK (status IN ('running', 'succeeded', 'partial', 'failed')),
    items_found integer NOT NULL DEFAULT 0 CHECK (items_found >= 0),
    items_deleted integer NOT NULL DEFAULT 0 CHECK (items_deleted >= 0 AND items_deleted <= items_found),
    details jsonb,
    started_at timestamptz NOT NULL,
    completed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (completed_at IS NULL OR completed_at >= started_at)
);
CREATE INDEX cleanup_logs_client_time ON cleanup_logs (client_id, started_at DESC);

-- Daily savings per client (agent_id NULL) and per agent.
CREATE TABLE savings_snapshots (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES clients (id),
    agent_id uuid REFERENCES agents (id),
    day date NOT NULL,
    on_demand_cost numeric(14, 6) NOT NULL CHECK (on_demand_cost >= 0),
    actual_cost numeric(14, 6) NOT NULL CHECK (actual_cost >= 0),
    replica_cost numeric(14, 6) NOT NULL DEFAULT 0 CHECK (replica_cost >= 0),
    savings numeric(14, 6) NOT NULL,
    savings_percent numeric(6, 2),
    instance_hours numeric(10, 2) NOT NULL DEFAULT 0 CHECK (instance_hours >= 0),
    computed_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (client_id, agent_id, day)
);
CREATE INDEX savings_snapshots_client_day ON savings_snapshots (client_id, day DESC);

CREATE TABLE agent_health_metrics (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id uuid NOT NULL REFERENCES agents (id),
    recorded_at timestamptz NOT NULL,
    cpu_percent numeric(5, 2) CHECK (cpu_percent BETWEEN 0 AND 100),
    memory_percent numeric(5, 2) CHECK (memory_percent BETWEEN 0 AND 100),
    heartbeat_latency_ms integer CHECK (heartbeat_latency_ms >= 0),
    report_lag_ms integer CHECK (report_lag_ms >= 0),
    spool_depth integer CHECK (spool_depth >= 0),
    uptime_seconds bigint CHECK (uptime_seconds >= 0),
    UNIQUE (agent_id, recorded_at)
);

CREATE TABLE pool_risk_analysis (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pool_id text NOT NULL REFERENCES spot_pools (id),
    analyzed_at timestamptz NOT NULL,
    risk_score numeric(4, 3) NOT NULL CHECK (risk_score BETWEEN 0 AND 1),
    interruption_component numeric(4, 3) CHECK (interruption_component BETWEEN 0 AND 1),
    advisor_prior numeric(4, 3) CHECK (advisor_prior BETWEEN 0 AND 1),
    advisor_band smallint CHECK (advisor_band BETWEEN 0 AND 4),
    age_component numeric(4, 3) CHECK (age_component BETWEEN 0 AND 1),
    volatility_component numeric(4, 3) CHECK (volatility_component BETWEEN 0 AND 1),
    time_of_day_component numeric(4, 3) CHECK (time_of_day_component BETWEEN 0 AND 1),
    interruptions_30d integer CHECK (interruptions_30d >= 0),
    details jsonb,
    UNIQUE (pool_id, analyzed_at)
);
CREATE INDEX pool_risk_analysis_pool_time ON pool_risk_analysis (pool_id, analyzed_at DESC);

CREATE TABLE replica_cost_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    replica_id uuid NOT NULL REFERENCES replica_instances (id),
    agent_id uuid NOT NULL REFERENCES agents (id),
    client_id uuid NOT NULL REFERENCES clients (id),
    pool_id text REFERENCES spot_pools (id),
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL CHECK (period_end > period_start),
    hourly_cost numeric(12, 6) NOT NULL CHECK (hourly_cost >= 0),
    cost numeric(14, 6) NOT NULL CHECK (cost >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (replica_id, period_start)
);
CREATE INDEX replica_cost_log_client_time ON replica_cost_log (client_id, period_start DESC);
