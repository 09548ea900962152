-- The replica coordinator: interruption defence flag, replica state timing, commands aimed at
-- one instance, durable state transfers, and one failover per terminated instance.

-- Interruption defence (seed 000's auto_replica_enabled): on by default, because a spot
-- product that stays passive on a rebalance recommendation is not protecting anyone; it only
-- launches a replica when the risk passes the threshold.
ALTER TABLE agents ADD COLUMN auto_replica_enabled boolean NOT NULL DEFAULT true;

-- When the replica entered its current status: "stuck in launching or syncing" is measured
-- from here, not from updated_at, which every progress report touches.
ALTER TABLE replica_instances
    ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN tags jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(tags) = 'object');
CREATE INDEX replica_instances_unsettled ON replica_instances (status_changed_at) WHERE status IN ('launching', 'syncing');
CREATE INDEX replica_instances_instance ON replica_instances (instance_id) WHERE instance_id IS NOT NULL;

-- A command names the instance whose agent executes it (a primary and its replica poll
-- under the same agent id) and the replica it concerns; delivery_count counts hand-outs,
-- so a command an agent fetched but never answered is handed out again after a lease.
ALTER TABLE commands
    ADD COLUMN target_instance_id text,
    ADD COLUMN replica_id uuid REFERENCES replica_instances (id),
    ADD COLUMN delivery_count integer NOT NULL DEFAULT 0 CHECK (delivery_count >= 0);
CREATE INDEX commands_replica ON commands (replica_id) WHERE replica_id IS NOT NULL;

-- The latest state a primary handed its replica (gzip, stored as sent), fetched by the replica.
CREATE TABLE replica_state_transfers (
    replica_id uuid PRIMARY KEY REFERENCES replica_instances (id),
    agent_id uuid NOT NULL REFERENCES agents (id),
    content bytea NOT NULL,
    sha256 bytea NOT NULL CHECK (length(sha256) = 32),
    size_bytes integer NOT NULL CHECK (size_bytes > 0),
    sequence integer NOT NULL DEFAULT 1 CHECK (sequence > 0),
    uploaded_at timestamptz NOT NULL DEFAULT now()
);

-- Interruption history per pool (the risk score's first component), and one failover per
-- terminated instance however often the notice is repeated.
ALTER TABLE spot_interruption_events ADD COLUMN pool_id text REFERENCES spot_pools (id),
    ADD COLUMN client_id uuid REFERENCES clients (id),
    ADD COLUMN new_instance_id text,
    ADD COLUMN risk_components jsonb;
CREATE INDEX spot_interruption_events_pool ON spot_interruption_events (pool_id, signal_type, detected_at DESC);
CREATE UNIQUE INDEX spot_interruption_events_one_termination
    ON spot_interruption_events (agent_id, instance_id) WHERE signal_type = 'termination-notice';
