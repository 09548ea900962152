-- A primary that went silent while it has a ready replica is checked by the replica's agent
-- (DescribeInstances of the primary): a `check_primary` command. A primary found gone is an
-- `instance-lost` interruption: it was reclaimed or failed without a notice.
ALTER TABLE commands DROP CONSTRAINT commands_command_type_check;
ALTER TABLE commands ADD CONSTRAINT commands_command_type_check
    CHECK (command_type IN ('launch_replica', 'promote', 'terminate', 'switch', 'snapshot', 'check_primary'));
ALTER TABLE spot_interruption_events DROP CONSTRAINT spot_interruption_events_signal_type_check;
ALTER TABLE spot_interruption_events ADD CONSTRAINT spot_interruption_events_signal_type_check
    CHECK (signal_type IN ('rebalance-recommendation', 'termination-notice', 'instance-lost'));
CREATE INDEX commands_agent_check_primary ON commands (agent_id, created_at DESC) WHERE command_type = 'check_primary';
