-- Where each workload's traffic enters (Elastic IPs, target groups, Route 53 records): what a
-- promotion or switch moves to the new primary before the old one is fenced. The replica
-- coordinator owns it; agents and the console read it.
CREATE TABLE agent_traffic (
    agent_id uuid PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    client_id uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    config jsonb NOT NULL CHECK (jsonb_typeof(config) = 'object'),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What moving the traffic did (steps, attempts, times) and when the old primary was fenced.
ALTER TABLE switches ADD COLUMN traffic jsonb, ADD COLUMN fenced_at timestamptz;

-- `fence`: the old primary runs its stop hook once the traffic has left it.
ALTER TABLE commands DROP CONSTRAINT commands_command_type_check;
ALTER TABLE commands ADD CONSTRAINT commands_command_type_check
    CHECK (command_type IN ('launch_replica', 'promote', 'terminate', 'switch', 'snapshot', 'check_primary', 'fence'));
