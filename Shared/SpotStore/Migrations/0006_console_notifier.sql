-- The console's sessions and the notifier's notifications, webhook subscriptions and deliveries.

-- A dashboard login: only SHA-256 of the cookie value is kept; the CSRF token every form of
-- the session carries lives beside it.
CREATE TABLE console_sessions (
    id_hash bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    client_id uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    csrf_token text NOT NULL CHECK (length(csrf_token) = 64),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
CREATE INDEX console_sessions_client ON console_sessions (client_id);

-- Repeated alerts within the collapse window are one notification counted up.
ALTER TABLE notifications
    ADD COLUMN event_type text,
    ADD COLUMN collapse_key text,
    ADD COLUMN occurrences integer NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
    ADD COLUMN last_occurred_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN details jsonb NOT NULL DEFAULT '{}';
CREATE INDEX notifications_collapse ON notifications (collapse_key, last_occurred_at DESC);
CREATE INDEX notifications_client ON notifications (client_id, last_occurred_at DESC);

-- Bus messages the notifier has handled, so a redelivery changes nothing.
CREATE TABLE notifier_messages (
    message_id uuid PRIMARY KEY,
    notification_id uuid REFERENCES notifications (id) ON DELETE CASCADE,
    handled_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_subscriptions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    url text NOT NULL CHECK (url ~ '^https?://[^\s]+$' AND length(url) <= 2048),
    -- HMAC key: kept as given, since signing needs it
    secret text NOT NULL CHECK (length(secret) BETWEEN 16 AND 256),
    -- a JSON array of event types or "prefix.*" patterns; empty: every event
    event_filter jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(event_filter) = 'array'),
    payload_format text NOT NULL DEFAULT 'json' CHECK (payload_format IN ('json', 'slack')),
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_subscriptions_client ON webhook_subscriptions (client_id) WHERE is_active;

-- One notification to one subscription. pending → delivered, or dead after the last attempt
-- (the dead letters, with the last answer); a claimed row's next_attempt_at is its lease.
CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    subscription_id uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    notification_id uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error text,
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription_id, notification_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
