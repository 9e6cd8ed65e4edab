-- The operator console: local users (argon2 hashes), server-side sessions, failed logins for the
-- rate limit, and one row per console action (who did what, why, and how it ended).
CREATE SCHEMA IF NOT EXISTS console;

CREATE TABLE console.users (
    name          text PRIMARY KEY,
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'approver', 'admin')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Only a hash of the session id is stored: a leaked table does not hand out live sessions.
CREATE TABLE console.sessions (
    id_hash    text PRIMARY KEY,
    user_name  text NOT NULL REFERENCES console.users (name) ON DELETE CASCADE,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_by_expiry ON console.sessions (expires_at);

CREATE TABLE console.login_failures (
    user_name text NOT NULL,
    client_ip text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_by_user_ip ON console.login_failures (user_name, client_ip, failed_at);

CREATE TABLE console.actions (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    user_name  text NOT NULL,
    role       text NOT NULL,
    action     text NOT NULL,
    target     text NOT NULL,
    reason     text,
    outcome    text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX actions_by_target ON console.actions (target, id);
