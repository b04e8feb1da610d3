-- netauto schema for PostgreSQL.

CREATE TABLE devices (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    host           TEXT    NOT NULL,
    port           INTEGER NOT NULL,
    platform       TEXT    NOT NULL,
    username       TEXT    NOT NULL,
    credential_ref TEXT,
    tags           JSONB   NOT NULL DEFAULT '[]',
    site           TEXT
);

CREATE TABLE runs (
    id            BIGSERIAL PRIMARY KEY,
    device_id     BIGINT      NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    command       TEXT        NOT NULL,
    requested_by  TEXT        NOT NULL,
    bulk_ref      TEXT,
    status        TEXT        NOT NULL,
    exit_status   INTEGER,
    error_kind    TEXT,
    error_message TEXT,
    inserted_at   TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ,
    retention_ts  TIMESTAMPTZ GENERATED ALWAYS AS (coalesce(finished_at, inserted_at)) STORED,
    bytes         BIGINT      NOT NULL DEFAULT 0,
    chunks        BIGINT      NOT NULL DEFAULT 0
);
-- Retention: per-device footprints oldest first, index-only (bytes and finished_at included).
CREATE INDEX runs_device_retention ON runs (device_id, retention_ts, id) INCLUDE (bytes, finished_at);
-- Retention: aged runs of all devices oldest first.
CREATE INDEX runs_retention ON runs (retention_ts, id) INCLUDE (device_id, bytes, finished_at);
CREATE INDEX runs_device_inserted ON runs (device_id, inserted_at DESC, id DESC);
CREATE INDEX runs_bulk ON runs (bulk_ref, device_id) WHERE bulk_ref IS NOT NULL;

CREATE TABLE run_chunks (
    run_id      BIGINT      NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         BIGINT      NOT NULL,
    stream      TEXT        NOT NULL,
    data        BYTEA       NOT NULL,
    inserted_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE bulks (
    ref          TEXT        PRIMARY KEY,
    command      TEXT        NOT NULL,
    requested_by TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    total        BIGINT      NOT NULL,
    ok           BIGINT      NOT NULL DEFAULT 0,
    failed       BIGINT      NOT NULL DEFAULT 0,
    finished_at  TIMESTAMPTZ
);

-- One row per device of a bulk; the outcome columns are filled once.
CREATE TABLE bulk_devices (
    bulk_ref    TEXT        NOT NULL REFERENCES bulks (ref) ON DELETE CASCADE,
    position    BIGINT      NOT NULL,
    device_id   BIGINT      NOT NULL,
    run_id      BIGINT,
    status      TEXT,
    error_kind  TEXT,
    recorded_at TIMESTAMPTZ,
    PRIMARY KEY (bulk_ref, device_id)
);

CREATE TABLE jobs (
    id               BIGSERIAL PRIMARY KEY,
    queue            TEXT        NOT NULL,
    worker           TEXT        NOT NULL,
    args             JSONB       NOT NULL,
    state            TEXT        NOT NULL,
    attempt          INTEGER     NOT NULL DEFAULT 0,
    max_attempts     INTEGER     NOT NULL,
    priority         SMALLINT    NOT NULL,
    inserted_at      TIMESTAMPTZ NOT NULL,
    scheduled_at     TIMESTAMPTZ NOT NULL,
    attempted_at     TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    unique_key       TEXT,
    attempted_by     TEXT,
    lease_expires_at TIMESTAMPTZ,
    errors           JSONB       NOT NULL DEFAULT '[]'
);
-- A unique key is held by every job not discarded or cancelled.
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state NOT IN ('discarded', 'cancelled');
CREATE INDEX jobs_claim ON jobs (queue, priority, scheduled_at, id)
    WHERE state IN ('available', 'scheduled', 'retryable');
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'executing';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN ('completed', 'discarded', 'cancelled');

-- Wake runners on other nodes when jobs become available.
CREATE FUNCTION netauto_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('netauto_jobs', NEW.queue);
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_notify AFTER INSERT ON jobs FOR EACH ROW
    WHEN (NEW.state = 'available') EXECUTE FUNCTION netauto_jobs_notify();
