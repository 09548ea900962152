-- Failed authentications per minute, per client address and per presented token key id, added
-- up by every copy of every HTTP service (SpotRuntime's AuthFailureLimiter), so the limit holds
-- for the deployment rather than per process. Windows older than ten minutes are deleted.
CREATE TABLE auth_failures (
    window_start timestamptz NOT NULL,
    scope text NOT NULL CHECK (scope IN ('address', 'key')),
    subject text NOT NULL CHECK (length(subject) <= 64),
    failures integer NOT NULL CHECK (failures > 0),
    PRIMARY KEY (window_start, scope, subject)
);
