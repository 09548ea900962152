-- A workload's state as versions of content-addressed chunks: the primary's agent ships a
-- version on a period and on a notice, sending only the chunks the store does not hold yet;
-- a replica restores the newest complete version. Chunks live here (the embedded store) or in
-- the customer's S3 bucket (then only the manifest is kept here).
CREATE TABLE state_chunks (
    agent_id uuid NOT NULL REFERENCES agents (id),
    sha256 bytea NOT NULL CHECK (length(sha256) = 32),
    content bytea NOT NULL,
    size_bytes integer NOT NULL CHECK (size_bytes BETWEEN 0 AND 1048576),
    -- refreshed whenever an agent sends the chunk again: chunks younger than an hour are kept
    -- even when no version names them yet (a version being shipped)
    stored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, sha256)
);

CREATE TABLE state_versions (
    agent_id uuid NOT NULL REFERENCES agents (id),
    version bigint NOT NULL CHECK (version > 0),
    store text NOT NULL CHECK (store IN ('spotguard', 's3')),
    -- s3://bucket/prefix for the s3 store
    location text CHECK ((store = 's3') = (location IS NOT NULL)),
    manifest jsonb NOT NULL,
    chunks bytea[] NOT NULL,
    total_bytes bigint NOT NULL CHECK (total_bytes >= 0),
    file_count integer NOT NULL CHECK (file_count >= 0),
    instance_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, version)
);

-- Which version a replica holds, and since when it lacks a newer one.
ALTER TABLE replica_instances
    ADD COLUMN state_version bigint,
    ADD COLUMN state_lag_seconds double precision;
