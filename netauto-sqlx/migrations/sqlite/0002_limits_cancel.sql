-- Wave 2: output cap (truncated runs), cancel of bulks and runs, per-bulk limits.

-- The run's output reached the cap: exactly the cap's bytes were kept.
ALTER TABLE runs ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0;
-- A cancel was asked for; the node running the run finishes it `cancelled`.
ALTER TABLE runs ADD COLUMN cancel_requested_at INTEGER;

ALTER TABLE bulks ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bulks ADD COLUMN cancelled_at INTEGER;
-- The bulk's own deadline (milliseconds) and output cap (bytes); NULL: each node's default.
ALTER TABLE bulks ADD COLUMN timeout_ms INTEGER;
ALTER TABLE bulks ADD COLUMN max_output INTEGER;

ALTER TABLE bulk_devices ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0;
