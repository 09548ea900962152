-- The replica coordinator's reconciler runs in one copy at a time: the copy holding an
-- unexpired lease here. Every takeover increments the epoch, and every reconciler transaction
-- first checks (and share-locks) the row for its own epoch, so a copy that was paused past its
-- lease cannot write once another has taken over (a fencing token, checked by the database).
CREATE TABLE coordinator_leadership (
    id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    epoch bigint NOT NULL CHECK (epoch > 0),
    holder text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
