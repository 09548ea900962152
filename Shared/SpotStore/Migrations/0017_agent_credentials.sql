-- Per-instance credentials. An instance enrolls with its signed identity document and a
-- short-lived enrollment secret, and receives a token scoped to one agent; the client's token
-- no longer has to be on instances. Only SHA-256 digests of secrets and tokens are kept.
CREATE TABLE enrollment_secrets (
    key_id text PRIMARY KEY CHECK (key_id ~ '^[a-z0-9]{16}$'),
    secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
    client_id uuid NOT NULL REFERENCES clients (id),
    -- set: the instance enrolls as this agent (a replica or switch target the agent launches)
    agent_id uuid REFERENCES agents (id),
    -- set: only an instance of this AWS account may use it
    account_id text CHECK (account_id IS NULL OR account_id ~ '^[0-9]{12}$'),
    uses_left integer NOT NULL CHECK (uses_left >= 0),
    expires_at timestamptz NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX enrollment_secrets_expiry ON enrollment_secrets (expires_at);

-- One enrollment per instance, ever: a replayed identity document is refused.
CREATE TABLE enrolled_instances (
    instance_id text PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES clients (id),
    account_id text NOT NULL,
    region text NOT NULL,
    enrollment_key_id text NOT NULL,
    enrolled_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agent_tokens (
    key_id text PRIMARY KEY CHECK (key_id ~ '^[a-z0-9]{16}$'),
    token_hash bytea NOT NULL CHECK (length(token_hash) = 32),
    client_id uuid NOT NULL REFERENCES clients (id),
    -- null until the enrolled instance registers its agent
    agent_id uuid REFERENCES agents (id),
    instance_id text NOT NULL REFERENCES enrolled_instances (instance_id),
    issued_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX agent_tokens_agent ON agent_tokens (agent_id) WHERE revoked_at IS NULL;
