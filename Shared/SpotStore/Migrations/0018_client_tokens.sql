-- Further client tokens, each with a scope, for people and automation that should not hold the
-- client's own token (which stays `admin`): `read` sees everything and changes nothing,
-- `operate` also runs the fleet (switches, replicas, modes, agent traffic), `admin` also
-- manages credentials and webhooks. Only SHA-256 digests are kept.
CREATE TABLE client_tokens (
    key_id text PRIMARY KEY CHECK (key_id ~ '^[a-z0-9]{16}$'),
    token_hash bytea NOT NULL CHECK (length(token_hash) = 32),
    client_id uuid NOT NULL REFERENCES clients (id),
    scope text NOT NULL CHECK (scope IN ('read', 'operate', 'admin')),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX client_tokens_client ON client_tokens (client_id) WHERE revoked_at IS NULL;

-- A dashboard session carries the scope of the token that opened it, and ends with that token.
ALTER TABLE console_sessions
    ADD COLUMN scope text NOT NULL DEFAULT 'admin' CHECK (scope IN ('read', 'operate', 'admin')),
    ADD COLUMN token_key_id text;
