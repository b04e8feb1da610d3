-- Wave 2, team features: API tokens. Only the hash of a token's secret is stored.
CREATE TABLE api_tokens (
    id           BIGSERIAL   PRIMARY KEY,
    user_name    TEXT        NOT NULL,
    name         TEXT        NOT NULL,
    hash         TEXT        NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_tokens_user ON api_tokens (user_name, id);
