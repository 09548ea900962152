-- The zones where an agent's VPC has a subnet, as its agent reports them at registration:
-- a replica or switch target is never placed in a zone the workload cannot launch in.
-- NULL: not known (no VPC, or the agent could not read its subnets) — every zone is a candidate.
ALTER TABLE agents ADD COLUMN IF NOT EXISTS usable_zones text[];
