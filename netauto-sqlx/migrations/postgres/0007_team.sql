-- Wave 2, team features: user accounts with a role, and the audit log.
CREATE TABLE users (
    name          TEXT        PRIMARY KEY,
    role          TEXT        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE TABLE audit_events (
    id      BIGSERIAL   PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL,
    actor   TEXT        NOT NULL,
    action  TEXT        NOT NULL,
    target  TEXT        NOT NULL,
    detail  TEXT        NOT NULL,
    address TEXT
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_actor ON audit_events (actor, id);
