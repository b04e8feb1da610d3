-- netauto schema for SQLite. Timestamps are INTEGER microseconds since the Unix epoch (UTC).
-- Ids use AUTOINCREMENT: a deleted run's or job's id is never handed out again.

CREATE TABLE devices (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL UNIQUE,
    host           TEXT    NOT NULL,
    port           INTEGER NOT NULL,
    platform       TEXT    NOT NULL,
    username       TEXT    NOT NULL,
    credential_ref TEXT,
    tags           TEXT    NOT NULL DEFAULT '[]',
    site           TEXT
);

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id     INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    command       TEXT    NOT NULL,
    requested_by  TEXT    NOT NULL,
    bulk_ref      TEXT,
    status        TEXT    NOT NULL,
    exit_status   INTEGER,
    error_kind    TEXT,
    error_message TEXT,
    inserted_at   INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    -- coalesce(finished_at, inserted_at), kept by the store on insert and finish
    retention_ts  INTEGER NOT NULL,
    bytes         INTEGER NOT NULL DEFAULT 0,
    chunks        INTEGER NOT NULL DEFAULT 0
);
-- Retention: per-device footprints oldest first (covering: bytes and finished_at included).
CREATE INDEX runs_device_retention ON runs (device_id, retention_ts, id, bytes, finished_at);
-- Retention: aged runs of all devices oldest first.
CREATE INDEX runs_retention ON runs (retention_ts, id);
-- Run history per device (newest first) is served by runs_device_retention plus a top-N
-- sort: one index less to maintain on every insert and purge.
CREATE INDEX runs_bulk ON runs (bulk_ref, device_id) WHERE bulk_ref IS NOT NULL;

CREATE TABLE run_chunks (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    stream      TEXT    NOT NULL,
    data        BLOB    NOT NULL,
    inserted_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE bulks (
    ref          TEXT    PRIMARY KEY,
    command      TEXT    NOT NULL,
    requested_by TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    total        INTEGER NOT NULL,
    ok           INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    finished_at  INTEGER
);

-- One row per device of a bulk; the outcome columns are filled once.
CREATE TABLE bulk_devices (
    bulk_ref    TEXT    NOT NULL REFERENCES bulks (ref) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    device_id   INTEGER NOT NULL,
    run_id      INTEGER,
    status      TEXT,
    error_kind  TEXT,
    recorded_at INTEGER,
    PRIMARY KEY (bulk_ref, device_id)
) WITHOUT ROWID;

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    queue            TEXT    NOT NULL,
    worker           TEXT    NOT NULL,
    args             TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    priority         INTEGER NOT NULL,
    inserted_at      INTEGER NOT NULL,
    scheduled_at     INTEGER NOT NULL,
    attempted_at     INTEGER,
    finished_at      INTEGER,
    unique_key       TEXT,
    attempted_by     TEXT,
    lease_expires_at INTEGER,
    errors           TEXT    NOT NULL DEFAULT '[]'
);
-- A unique key is held by every job not discarded or cancelled.
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state NOT IN ('discarded', 'cancelled');
CREATE INDEX jobs_claim ON jobs (queue, priority, scheduled_at, id)
    WHERE state IN ('available', 'scheduled', 'retryable');
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'executing';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN ('completed', 'discarded', 'cancelled');
