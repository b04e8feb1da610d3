-- Wave 2, working with results: full-text search over stored output.
-- A contentless FTS5 index (the text lives in run_chunks only) with the trigram tokenizer:
-- case-insensitive substring matching, as `| include` does on a device. One entry per chunk,
-- rowid = run_id << 32 | seq, holding the unfinished line before the chunk and the chunk
-- (the store writes it with the chunk, in the same transaction).
CREATE VIRTUAL TABLE run_search USING fts5 (
    body,
    tokenize = 'trigram',
    content = '',
    contentless_delete = 1
);

-- A deleted chunk (retention deletes runs; their chunks cascade) leaves the index with it.
CREATE TRIGGER run_chunks_unindex AFTER DELETE ON run_chunks BEGIN
    DELETE FROM run_search WHERE rowid = (old.run_id << 32) | old.seq;
END;

-- The output stored before this version, each chunk with the end of the one before it.
INSERT INTO run_search (rowid, body)
SELECT (run_id << 32) | seq,
       CAST(coalesce(substr(lag(data) OVER (PARTITION BY run_id ORDER BY seq), -2048), x'') || data AS TEXT)
FROM run_chunks;
