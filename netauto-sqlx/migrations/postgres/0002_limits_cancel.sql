-- Wave 2: output cap (truncated runs), cancel of bulks and runs, per-bulk limits.

-- The run's output reached the cap: exactly the cap's bytes were kept.
ALTER TABLE runs ADD COLUMN truncated BOOLEAN NOT NULL DEFAULT FALSE;
-- A cancel was asked for; the node running the run finishes it `cancelled`.
ALTER TABLE runs ADD COLUMN cancel_requested_at TIMESTAMPTZ;

ALTER TABLE bulks ADD COLUMN cancelled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE bulks ADD COLUMN cancelled_at TIMESTAMPTZ;
-- The bulk's own deadline (milliseconds) and output cap (bytes); NULL: each node's default.
ALTER TABLE bulks ADD COLUMN timeout_ms BIGINT;
ALTER TABLE bulks ADD COLUMN max_output BIGINT;

ALTER TABLE bulk_devices ADD COLUMN truncated BOOLEAN NOT NULL DEFAULT FALSE;
