-- Wave 2, working with results: full-text search over stored output.
-- pg_trgm (shipped with PostgreSQL; a trusted extension: the database owner may create it)
-- gives a GIN index that answers `ILIKE '%text%'`: case-insensitive substring matching, as
-- `| include` does on a device. An extension exists once per database: it is used where it
-- already is, else created in `public` (where every schema's tables can use it), else in the
-- current schema.

-- One row per chunk: the unfinished line before the chunk and the chunk, as text (the store
-- writes it with the chunk, in the same transaction). It goes with its chunk.
CREATE TABLE run_search (
    run_id BIGINT NOT NULL,
    seq    BIGINT NOT NULL,
    body   TEXT   NOT NULL,
    PRIMARY KEY (run_id, seq),
    FOREIGN KEY (run_id, seq) REFERENCES run_chunks (run_id, seq) ON DELETE CASCADE
);
DO $$
DECLARE
    home TEXT;
BEGIN
    SELECT n.nspname INTO home FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    IF home IS NULL THEN
        IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public') THEN
            CREATE EXTENSION pg_trgm SCHEMA public;
        ELSE
            CREATE EXTENSION pg_trgm;
        END IF;
        SELECT n.nspname INTO home FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_trgm';
    END IF;
    EXECUTE format('CREATE INDEX run_search_body ON run_search USING gin (body %I.gin_trgm_ops)', home);
END
$$;

-- The output stored before this version, each chunk with the end of the one before it
-- (output that is not UTF-8 is indexed with its odd bytes escaped).
CREATE FUNCTION netauto_search_text(data BYTEA) RETURNS TEXT LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN convert_from(data, 'UTF8');
EXCEPTION WHEN others THEN
    RETURN encode(data, 'escape');
END
$$;
INSERT INTO run_search (run_id, seq, body)
SELECT run_id, seq,
       netauto_search_text(
           coalesce(substring(lag(data) OVER (PARTITION BY run_id ORDER BY seq)
                              FROM greatest(octet_length(lag(data) OVER (PARTITION BY run_id ORDER BY seq)) - 2047, 1)), '')
           || data)
FROM run_chunks;
DROP FUNCTION netauto_search_text(BYTEA);
