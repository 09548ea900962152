-- The default decision engine prices interruptions instead of fleeing them (`cost`); the seeds'
-- band rules stay available as `conservative`. Agents on the old default (`rules`) move to the
-- new one. Each agent says what an interruption without a ready replica costs its workload
-- (dollars: minutes of downtime), which the cost engine weighs against the spot discount.
ALTER TABLE agents DROP CONSTRAINT IF EXISTS agents_decision_engine_check;
UPDATE agents SET decision_engine = 'cost' WHERE decision_engine NOT IN ('cost', 'conservative', 'learned');
ALTER TABLE agents ALTER COLUMN decision_engine SET DEFAULT 'cost';
ALTER TABLE agents ADD CONSTRAINT agents_decision_engine_check CHECK (decision_engine IN ('cost', 'conservative', 'learned'));
ALTER TABLE agents ADD COLUMN IF NOT EXISTS interruption_cost numeric(12, 2) NOT NULL DEFAULT 5
    CHECK (interruption_cost >= 0 AND interruption_cost <= 1000000);
-- the ledger keeps the rows `rules` wrote
ALTER TABLE agent_decision_history DROP CONSTRAINT IF EXISTS agent_decision_history_engine_check;
ALTER TABLE agent_decision_history ADD CONSTRAINT agent_decision_history_engine_check
    CHECK (engine IN ('rules', 'cost', 'conservative', 'learned'));
