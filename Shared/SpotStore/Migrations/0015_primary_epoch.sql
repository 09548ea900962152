-- The agent's primary epoch: raised each time another instance becomes its primary (a switch
-- reported, a replica promoted, a new instance registered in its place). Every command carries
-- the epoch it was issued at; a command that acts as the primary (switch, promote) is void once
-- the epoch moved on, so an old primary that wakes up late, or a promotion that was overtaken,
-- cannot make a second primary.
ALTER TABLE agents ADD COLUMN IF NOT EXISTS primary_epoch bigint NOT NULL DEFAULT 1;
UPDATE agents a SET primary_epoch = 1 + (SELECT count(*) FROM switches s WHERE s.agent_id = a.id AND s.new_instance_id IS NOT NULL)
 WHERE primary_epoch = 1;
ALTER TABLE commands ADD COLUMN IF NOT EXISTS primary_epoch bigint;
