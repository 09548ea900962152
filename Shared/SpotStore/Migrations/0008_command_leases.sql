-- A delivered command is the agent's until its lease ends; the lease is as long as the kind of
-- work (a switch images and boots an instance: tens of minutes) and the agent renews it while
-- it works, so a command is handed out again only when its agent stopped answering.
ALTER TABLE commands ADD COLUMN lease_expires_at timestamptz;
UPDATE commands SET lease_expires_at = delivered_at + interval '60 seconds' WHERE status = 'delivered';
ALTER TABLE commands ADD CONSTRAINT commands_delivered_leased CHECK (status <> 'delivered' OR lease_expires_at IS NOT NULL);
