-- The decision engine's pass (claimed like the SEF's jobs) and the look-ups it makes per pool.
INSERT INTO scheduled_jobs (name) VALUES ('decisions.pass');
CREATE INDEX instances_pool_active ON instances (current_pool_id) WHERE is_active;
CREATE INDEX commands_agent_open_switch ON commands (agent_id) WHERE command_type = 'switch' AND status IN ('pending', 'delivered');
