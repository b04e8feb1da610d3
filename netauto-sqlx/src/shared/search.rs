//! Full-text search over stored output (see `netauto_core::search` for what a query means).
//!
//! Both backends index each output chunk, prefixed with the unfinished line before it
//! ([`line_carry`]), in the transaction that stores the chunk:
//!
//! * SQLite: `run_search`, a contentless FTS5 table with the trigram tokenizer (an index
//!   only: the text is not stored twice), rowid `run_id << 32 | seq`; a trigger removes a
//!   chunk's entry when the chunk is deleted (retention deletes runs, chunks cascade). A
//!   query walks the index newest first (rowid descending) joined to the runs for the
//!   filters, and stops as soon as a page of distinct runs is found.
//! * PostgreSQL: `run_search (run_id, seq, body)` with a `pg_trgm` GIN index on `body`,
//!   deleted with its chunk by a foreign key; a query is `body ILIKE '%text%'`.

use futures_util::TryStreamExt;
use netauto_core::search::{MAX_CARRY_CHUNKS, MAX_LINE_CARRY, SearchQuery, index_text, line_carry};
use netauto_core::{Result, Run, RunId};

use crate::error::db;
use crate::rows::{self, Columns, StoredRow};
use crate::sql::{Bind, Dialect, Kind, Pools, Portable, Statement};

/// The FTS5 rowid of a chunk.
fn chunk_key(run_id: i64, seq: i64) -> i64 {
    (run_id << 32) | (seq & 0xFFFF_FFFF)
}

/// Indexes a chunk just stored in the transaction `conn` (`seq` > 0 reads the unfinished
/// line of the chunks before it).
pub(crate) async fn index_chunk<DB: Dialect>(
    conn: &mut DB::Connection,
    run_id: i64,
    seq: i64,
    data: &[u8],
) -> Result<()> {
    if seq >= 1 << 32 {
        // Four billion chunks in one run: beyond what the key holds, not indexed.
        return Ok(());
    }
    let carry = if seq == 0 {
        Vec::new()
    } else {
        let sql = DB::pick(
            "SELECT substring(data FROM greatest(octet_length(data) - $3::int + 1, 1)) AS tail
             FROM run_chunks WHERE run_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $4",
            "SELECT substr(data, -$3) AS tail
             FROM run_chunks WHERE run_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $4",
        );
        let mut tails = Vec::new();
        let mut carried = 0;
        {
            let mut rows = sqlx::query::<DB>(sql)
                .int(run_id)
                .int(seq)
                .int(MAX_LINE_CARRY as i64)
                .int(MAX_CARRY_CHUNKS as i64)
                .fetch(DB::conn(conn));
            while let Some(row) = rows.try_next().await.map_err(db)? {
                let tail = row.blob("tail")?;
                let done = tail.contains(&b'\n');
                carried += tail.len();
                tails.push(tail);
                if done || carried >= MAX_LINE_CARRY {
                    break;
                }
            }
        }
        line_carry(tails)
    };
    let body = index_text(&carry, data);
    let insert = match DB::KIND {
        Kind::Postgres => {
            sqlx::query::<DB>("INSERT INTO run_search (run_id, seq, body) VALUES ($1, $2, $3)")
                .int(run_id)
                .int(seq)
                .text(&body)
        }
        Kind::Sqlite => sqlx::query::<DB>("INSERT INTO run_search (rowid, body) VALUES ($1, $2)")
            .int(chunk_key(run_id, seq))
            .text(&body),
    };
    insert.execute(DB::conn(conn)).await.map_err(db)?;
    Ok(())
}

/// The filters of `q` as SQL on `runs r` and `devices d`, numbered from `$first`.
fn filters<DB: Dialect>(q: &SearchQuery, first: usize) -> String {
    let mut n = first - 1;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    let mut sql = String::new();
    if q.device.is_some() {
        sql.push_str(&format!(" AND r.device_id = {}", next()));
    }
    if q.platform.is_some() {
        sql.push_str(&format!(
            " AND r.device_id IN (SELECT id FROM devices WHERE platform = {})",
            next()
        ));
    }
    if q.command.is_some() {
        let op = DB::pick("ILIKE", "LIKE");
        sql.push_str(&format!(" AND r.command {op} {} ESCAPE '\\'", next()));
    }
    if q.since.is_some() {
        sql.push_str(&format!(" AND r.inserted_at >= {}", next()));
    }
    if q.until.is_some() {
        sql.push_str(&format!(" AND r.inserted_at < {}", next()));
    }
    sql
}

/// `text` as a LIKE pattern matching it anywhere.
fn contains_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn bind_filters<'q, DB: Dialect>(
    mut query: Statement<'q, DB>,
    q: &'q SearchQuery,
    command: Option<&'q str>,
) -> Statement<'q, DB> {
    if let Some(d) = q.device {
        query = query.int(d.get());
    }
    if let Some(p) = &q.platform {
        query = query.text(p);
    }
    if let Some(c) = command {
        query = query.text(c);
    }
    if let Some(t) = q.since {
        query = query.time(t);
    }
    if let Some(t) = q.until {
        query = query.time(t);
    }
    query
}

pub(crate) async fn search_runs<P: Pools>(s: &P, q: &SearchQuery) -> Result<Vec<Run>> {
    netauto_core::search::check_text(&q.text)?;
    let page = q.page_size();
    let command = q.command.as_deref().map(contains_pattern);
    match P::DB::KIND {
        Kind::Postgres => {
            // ILIKE with the GIN trigram index: a bitmap of the matching chunks.
            let sql = format!(
                "SELECT r.* FROM runs r WHERE r.id IN (
                     SELECT s.run_id FROM run_search s WHERE s.body ILIKE $1 ESCAPE '\\' AND s.run_id < $2)
                 {} ORDER BY r.id DESC LIMIT {page}",
                filters::<P::DB>(q, 3)
            );
            let pattern = contains_pattern(&q.text);
            let before = q.before.map_or(i64::MAX, RunId::get);
            // Safe: fixed fragments; every value is a bound parameter.
            let query = sqlx::query::<P::DB>(sqlx::AssertSqlSafe(sql))
                .text(&pattern)
                .int(before);
            let found = bind_filters(query, q, command.as_deref())
                .fetch_all(P::DB::pool(s.reader()))
                .await
                .map_err(db)?;
            found.iter().map(rows::run).collect()
        }
        Kind::Sqlite => {
            let mut found = Vec::with_capacity(page);
            let mut before = q.before.map_or(i64::MAX, RunId::get);
            if q.device.is_some() {
                before = sqlite_one_device(s, q, command.as_deref(), &mut found).await?;
            }
            if found.len() < page && before > 1 {
                sqlite_scan(s, q, command.as_deref(), before, &mut found).await?;
            }
            Ok(found)
        }
    }
}

/// SQLite: the FTS5 index newest first from run `before` down, joined to the run for the
/// filters (CROSS JOIN keeps the index the outer loop, so the scan stops as soon as the page
/// is full); several chunks of one run come one after another and count once.
async fn sqlite_scan<P: Pools>(
    s: &P,
    q: &SearchQuery,
    command: Option<&str>,
    before: i64,
    runs: &mut Vec<Run>,
) -> Result<()> {
    let page = q.page_size();
    let sql = format!(
        "SELECT s.rowid AS search_key, r.* FROM run_search s CROSS JOIN runs r ON r.id = s.rowid >> 32
         WHERE s.run_search MATCH $1 AND s.rowid < $2 {}
         ORDER BY s.rowid DESC LIMIT $3",
        filters::<P::DB>(q, 4)
    );
    let phrase = fts_phrase(&q.text);
    let mut bound = before.checked_mul(1 << 32).unwrap_or(i64::MAX);
    let batch = (page * 4).max(64) as i64;
    loop {
        let query = sqlx::query::<P::DB>(sqlx::AssertSqlSafe(sql.clone()))
            .text(&phrase)
            .int(bound)
            .int(batch);
        let found = bind_filters(query, q, command)
            .fetch_all(P::DB::pool(s.reader()))
            .await
            .map_err(db)?;
        for row in &found {
            let id = row.int("search_key")? >> 32;
            if runs.last().is_some_and(|r| r.id.get() == id) {
                continue;
            }
            runs.push(rows::run(row)?);
            if runs.len() == page {
                return Ok(());
            }
            // The next batch starts below the run's other chunks.
            bound = id << 32;
        }
        if (found.len() as i64) < batch {
            return Ok(());
        }
    }
}

/// `text` as an FTS5 phrase (with the trigram tokenizer: a substring).
fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// SQLite, one device: its newest runs, each looked up in the index by its rowid range — a
/// device has few runs next to the whole index, which a common text fills with other
/// devices' runs. After [`DEVICE_CHECKS`] runs without a full page (a rare text: the index
/// scan is the faster way), answers where the scan should go on from.
async fn sqlite_one_device<P: Pools>(
    s: &P,
    q: &SearchQuery,
    command: Option<&str>,
    found: &mut Vec<Run>,
) -> Result<i64> {
    let page = q.page_size();
    let phrase = fts_phrase(&q.text);
    let sql = format!(
        "SELECT r.* FROM runs r WHERE r.id < $1 {} ORDER BY r.id DESC LIMIT {DEVICE_CHECKS}",
        filters::<P::DB>(q, 2)
    );
    let mut before = q.before.map_or(i64::MAX, RunId::get);
    let query = sqlx::query::<P::DB>(sqlx::AssertSqlSafe(sql)).int(before);
    let runs = bind_filters(query, q, command)
        .fetch_all(P::DB::pool(s.reader()))
        .await
        .map_err(db)?;
    for row in &runs {
        let run = rows::run(row)?;
        let id = run.id.get();
        let hit = sqlx::query::<P::DB>(
            "SELECT 1 AS hit FROM run_search WHERE run_search MATCH $1 AND rowid BETWEEN $2 AND $3 LIMIT 1",
        )
        .text(&phrase)
        .int(id << 32)
        .int((id << 32) | 0xFFFF_FFFF)
        .fetch_optional(P::DB::pool(s.reader()))
        .await
        .map_err(db)?;
        before = id;
        if hit.is_some() {
            found.push(run);
            if found.len() == page {
                break;
            }
        }
    }
    if runs.len() < DEVICE_CHECKS {
        // Every run of the device was looked at.
        before = 1;
    }
    Ok(before)
}

/// Runs of one device looked up one by one before the index scan takes over.
const DEVICE_CHECKS: usize = 24;
