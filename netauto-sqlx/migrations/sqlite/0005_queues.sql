-- Wave 2, team features: a queue paused from the queues page stays paused on every node
-- (claim skips it) until resumed.
CREATE TABLE queue_pauses (
    queue     TEXT    PRIMARY KEY,
    paused_at INTEGER NOT NULL
);
