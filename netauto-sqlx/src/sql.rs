//! Statements written once for both backends: existence checks and the fencing of job and
//! run writes. [`Dialect`] says how each backend binds what differs (timestamps, attempt
//! numbers, id lists); [`Portable`] and [`Bind`] let code generic over a [`Dialect`] run
//! and bind without bounds of its own.
//!
//! Both backends read numbered placeholders (`$1`, SQLite's `$NNN`), so a statement that
//! differs in nothing else is written once.

use chrono::{DateTime, Utc};
use futures_util::TryFutureExt;
use netauto_core::{Conflict, Enqueued, Error, JobId, NewJob, Result, RunId};
use sqlx::query::Query;
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Transaction, Type};

use crate::error::db;
use crate::rows::StoredRow;

/// A statement of `DB` with its arguments.
pub(crate) type Statement<'q, DB> = Query<'q, DB, <DB as Database>::Arguments>;

/// What generic code needs of any sqlx database: executors on a pool and on a connection,
/// and the binds every backend encodes alike. Implemented once for every database that
/// has them, so functions over a [`Dialect`] state no bounds of their own.
pub(crate) trait Portable: Database {
    /// A pool as an executor.
    fn pool(pool: &Pool<Self>) -> impl Executor<'_, Database = Self>;
    /// A connection (or a transaction, dereferenced) as an executor.
    fn conn(conn: &mut Self::Connection) -> impl Executor<'_, Database = Self>;
    /// Binds an integer.
    fn bind_int(q: Statement<'_, Self>, v: i64) -> Statement<'_, Self>;
    /// Binds a nullable integer.
    fn bind_opt_int(q: Statement<'_, Self>, v: Option<i64>) -> Statement<'_, Self>;
    /// Binds a text.
    fn bind_text<'q>(q: Statement<'q, Self>, v: &str) -> Statement<'q, Self>;
    /// Binds a nullable text.
    fn bind_opt_text<'q>(q: Statement<'q, Self>, v: Option<&str>) -> Statement<'q, Self>;
    /// Binds a boolean.
    fn bind_flag(q: Statement<'_, Self>, v: bool) -> Statement<'_, Self>;
    /// Binds a nullable 32-bit integer (an INTEGER column of PostgreSQL).
    fn bind_opt_int32(q: Statement<'_, Self>, v: Option<i32>) -> Statement<'_, Self>;
    /// Binds bytes.
    fn bind_bytes<'q>(q: Statement<'q, Self>, v: &[u8]) -> Statement<'q, Self>;
}

impl<DB> Portable for DB
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i32>: Encode<'t, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    fn pool(pool: &Pool<Self>) -> impl Executor<'_, Database = Self> {
        pool
    }

    fn conn(conn: &mut Self::Connection) -> impl Executor<'_, Database = Self> {
        conn
    }

    fn bind_int(q: Statement<'_, Self>, v: i64) -> Statement<'_, Self> {
        q.bind(v)
    }

    fn bind_opt_int(q: Statement<'_, Self>, v: Option<i64>) -> Statement<'_, Self> {
        q.bind(v)
    }

    fn bind_text<'q>(q: Statement<'q, Self>, v: &str) -> Statement<'q, Self> {
        q.bind(v)
    }

    fn bind_opt_text<'q>(q: Statement<'q, Self>, v: Option<&str>) -> Statement<'q, Self> {
        q.bind(v)
    }

    fn bind_flag(q: Statement<'_, Self>, v: bool) -> Statement<'_, Self> {
        q.bind(v)
    }

    fn bind_opt_int32(q: Statement<'_, Self>, v: Option<i32>) -> Statement<'_, Self> {
        q.bind(v)
    }

    fn bind_bytes<'q>(q: Statement<'q, Self>, v: &[u8]) -> Statement<'q, Self> {
        q.bind(v)
    }
}

/// Binds of a [`Dialect`]'s statements, as methods.
pub(crate) trait Bind: Sized {
    /// Binds an integer.
    fn int(self, v: i64) -> Self;
    /// Binds a nullable integer.
    fn opt_int(self, v: Option<i64>) -> Self;
    /// Binds a text.
    fn text(self, v: &str) -> Self;
    /// Binds a nullable text.
    fn opt_text(self, v: Option<&str>) -> Self;
    /// Binds a boolean.
    fn flag(self, v: bool) -> Self;
    /// Binds a timestamp as the backend stores it.
    fn time(self, t: DateTime<Utc>) -> Self;
    /// Binds a nullable timestamp as the backend stores it.
    fn opt_time(self, t: Option<DateTime<Utc>>) -> Self;
    /// Binds an attempt number as the backend stores it.
    fn attempt(self, attempt: u32) -> Self;
    /// Binds a list of ids, as the backend's list statements read it.
    fn ids(self, ids: &[i64]) -> Self;
    /// Binds a list of texts, as the backend's list statements read it.
    fn texts(self, texts: &[&str]) -> Self;
    /// Binds a nullable 32-bit integer.
    fn opt_int32(self, v: Option<i32>) -> Self;
    /// Binds bytes.
    fn bytes(self, v: &[u8]) -> Self;
    /// Binds a value as the backend stores JSON.
    fn json<T: serde::Serialize + ?Sized>(self, v: &T) -> Result<Self>;
}

impl<DB: Dialect> Bind for Statement<'_, DB> {
    fn int(self, v: i64) -> Self {
        DB::bind_int(self, v)
    }

    fn opt_int(self, v: Option<i64>) -> Self {
        DB::bind_opt_int(self, v)
    }

    fn text(self, v: &str) -> Self {
        DB::bind_text(self, v)
    }

    fn opt_text(self, v: Option<&str>) -> Self {
        DB::bind_opt_text(self, v)
    }

    fn flag(self, v: bool) -> Self {
        DB::bind_flag(self, v)
    }

    fn time(self, t: DateTime<Utc>) -> Self {
        self.bind(DB::time(t))
    }

    fn opt_time(self, t: Option<DateTime<Utc>>) -> Self {
        self.bind(DB::opt_time(t))
    }

    fn attempt(self, attempt: u32) -> Self {
        self.bind(DB::attempt(attempt))
    }

    fn ids(self, ids: &[i64]) -> Self {
        self.bind(DB::ids(ids))
    }

    fn texts(self, texts: &[&str]) -> Self {
        self.bind(DB::texts(texts))
    }

    fn opt_int32(self, v: Option<i32>) -> Self {
        DB::bind_opt_int32(self, v)
    }

    fn bytes(self, v: &[u8]) -> Self {
        DB::bind_bytes(self, v)
    }

    fn json<T: serde::Serialize + ?Sized>(self, v: &T) -> Result<Self> {
        Ok(self.bind(DB::json(v)?))
    }
}

/// Which backend a [`Dialect`] is, for the statements whose SQL differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// A build with one backend constructs one variant.
#[cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) enum Kind {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// How a backend enqueues one job (its own SQL: unique keys are kept in different ways).
pub(crate) trait InsertJob: Database {
    /// Inserts one validated job inside the caller's transaction, or answers the job
    /// holding its unique key.
    fn insert_job(
        conn: &mut Self::Connection,
        job: NewJob,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Enqueued>> + Send;
}

/// What the statements of this module need to know of a backend.
pub(crate) trait Dialect:
    Portable + InsertJob + Database<Arguments: IntoArguments<Self>, Row: StoredRow>
{
    /// The backend.
    const KIND: Kind;

    /// A timestamp as bound.
    type Time: for<'q> Encode<'q, Self> + Type<Self> + Send;
    /// A nullable timestamp as bound.
    type OptTime: for<'q> Encode<'q, Self> + Type<Self> + Send;
    /// An attempt number as bound.
    type Attempt: for<'q> Encode<'q, Self> + Type<Self> + Send;
    /// An id as bound (`i64` in both backends).
    type Id: for<'q> Encode<'q, Self> + Type<Self> + Send + From<i64>;
    /// A text as bound (`String` in both backends).
    type Text: for<'q> Encode<'q, Self> + Type<Self> + Send + From<String>;

    /// A list of ids as bound (a BIGINT[] in PostgreSQL, the JSON array `json_each` reads
    /// in SQLite).
    type Ids: for<'q> Encode<'q, Self> + Type<Self> + Send;
    /// A list of texts as bound (a TEXT[] in PostgreSQL, a JSON array in SQLite).
    type Texts: for<'q> Encode<'q, Self> + Type<Self> + Send;
    /// A JSON value as bound (JSONB in PostgreSQL, TEXT in SQLite).
    type Json: for<'q> Encode<'q, Self> + Type<Self> + Send;

    /// The statement that begins a write transaction.
    const BEGIN_WRITE: &'static str;

    /// `SELECT 1` if a table of the name bound exists (in the schema searched first).
    const TABLE_EXISTS: &'static str;

    /// The SQL of a statement that differs by backend: `postgres` or `sqlite`.
    fn pick(postgres: &'static str, sqlite: &'static str) -> &'static str {
        match Self::KIND {
            Kind::Postgres => postgres,
            Kind::Sqlite => sqlite,
        }
    }

    /// Binds a timestamp.
    fn time(t: DateTime<Utc>) -> Self::Time;
    /// Binds a nullable timestamp.
    fn opt_time(t: Option<DateTime<Utc>>) -> Self::OptTime;
    /// Binds an attempt number.
    fn attempt(attempt: u32) -> Self::Attempt;
    /// Binds a list of ids.
    fn ids(ids: &[i64]) -> Self::Ids;
    /// Binds a list of texts.
    fn texts(texts: &[&str]) -> Self::Texts;
    /// Binds a value as JSON.
    fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<Self::Json>;
    /// A timestamp brought into the range the backend stores (PostgreSQL's starts in
    /// 4713 BC), for comparisons with stored ones.
    fn stored_range(t: DateTime<Utc>) -> DateTime<Utc> {
        t
    }
    /// The rows a statement changed.
    fn rows_affected(done: &Self::QueryResult) -> u64;
}

/// Where a backend runs its statements: `reader` for reads, `writer` for writes,
/// `lease_writer` for lease renewals, `begin_write` for a write transaction.
pub(crate) trait Pools: Sync {
    /// The backend.
    type DB: Dialect;
    /// The pool reads go to.
    fn reader(&self) -> &Pool<Self::DB>;
    /// The pool writes go to.
    fn writer(&self) -> &Pool<Self::DB>;
    /// The pool lease renewals go to.
    fn lease_writer(&self) -> &Pool<Self::DB> {
        self.writer()
    }
    /// A write transaction.
    fn begin_write(&self) -> impl Future<Output = Result<Transaction<'static, Self::DB>>> + Send;
}

/// The pools of a database: `reader` for reads, `writer` for writes (the same pool in
/// PostgreSQL; SQLite's one writer connection), `lease_writer` for lease renewals (its own
/// pool in PostgreSQL, the writer in SQLite).
#[derive(Debug)]
pub(crate) struct DbPools<DB: Database> {
    pub(crate) reader: Pool<DB>,
    pub(crate) writer: Pool<DB>,
    pub(crate) lease_writer: Pool<DB>,
}

impl<DB: Database> Clone for DbPools<DB> {
    fn clone(&self) -> Self {
        Self {
            reader: self.reader.clone(),
            writer: self.writer.clone(),
            lease_writer: self.lease_writer.clone(),
        }
    }
}

impl<DB: Dialect> Pools for DbPools<DB> {
    type DB = DB;

    fn reader(&self) -> &Pool<DB> {
        &self.reader
    }

    fn writer(&self) -> &Pool<DB> {
        &self.writer
    }

    fn lease_writer(&self) -> &Pool<DB> {
        &self.lease_writer
    }

    fn begin_write(&self) -> impl Future<Output = Result<Transaction<'static, DB>>> + Send {
        self.writer.begin_with(DB::BEGIN_WRITE).map_err(db)
    }
}

/// A job of the id bound.
const JOB_EXISTS: &str = "SELECT 1 FROM jobs WHERE id = $1";
/// A run of the id bound.
const RUN_EXISTS: &str = "SELECT 1 FROM runs WHERE id = $1";
/// A bulk of the ref bound.
const BULK_EXISTS: &str = "SELECT 1 FROM bulks WHERE ref = $1";

/// Whether `sql`, with `value` bound, answers a row.
pub(crate) async fn exists<'c, DB, T>(
    exec: impl Executor<'c, Database = DB>,
    sql: &'static str,
    value: T,
) -> Result<bool>
where
    DB: Dialect,
    T: for<'q> Encode<'q, DB> + Type<DB> + Send,
{
    let row = sqlx::query::<DB>(sql)
        .bind(value)
        .fetch_optional(exec)
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

/// Why a fenced write to job `id` at `attempt` changed nothing: the attempt is stale
/// ([`Conflict::StaleAttempt`]) or the job is gone.
pub(crate) async fn fence_error<'c, DB: Dialect>(
    exec: impl Executor<'c, Database = DB>,
    id: JobId,
    attempt: u32,
) -> Error {
    match exists(exec, JOB_EXISTS, DB::Id::from(id.get())).await {
        Ok(true) => Conflict::StaleAttempt { job: id, attempt }.into(),
        Ok(false) => Error::job_not_found(id),
        Err(e) => e,
    }
}

/// Runs a fenced single-row update of job `id` on `write`: `sql` binds a timestamp `at`,
/// the job id and the attempt, in that order. Zero rows means a stale attempt or no such
/// job, which `check` tells (see [`fence_error`]).
pub(crate) async fn fenced<'w, 'c, DB: Dialect>(
    write: impl Executor<'w, Database = DB>,
    check: impl Executor<'c, Database = DB>,
    sql: &'static str,
    at: DateTime<Utc>,
    id: JobId,
    attempt: u32,
) -> Result<()> {
    let done = sqlx::query::<DB>(sql)
        .bind(DB::time(at))
        .bind(DB::Id::from(id.get()))
        .bind(DB::attempt(attempt))
        .execute(write)
        .await
        .map_err(db)?;
    if DB::rows_affected(&done) == 0 {
        return Err(fence_error(check, id, attempt).await);
    }
    Ok(())
}

/// Why a write to run `id`, allowed only while it runs, changed nothing: it finished
/// ([`Conflict::RunFinished`]) or is gone ([`Error::RunGone`]).
pub(crate) async fn not_running<'c, DB: Dialect>(
    exec: impl Executor<'c, Database = DB>,
    id: RunId,
) -> Error {
    match exists(exec, RUN_EXISTS, DB::Id::from(id.get())).await {
        Ok(true) => Conflict::RunFinished(id).into(),
        Ok(false) => Error::RunGone(id),
        Err(e) => e,
    }
}

/// [`not_running`] for a cancel request, which answers a missing run as not found.
pub(crate) async fn not_cancellable<'c, DB: Dialect>(
    exec: impl Executor<'c, Database = DB>,
    id: RunId,
) -> Error {
    match not_running(exec, id).await {
        Error::RunGone(_) => Error::run_not_found(id),
        other => other,
    }
}

/// Fails with [`Error::bulk_not_found`] unless bulk `bulk_ref` exists.
pub(crate) async fn bulk_exists<'c, DB: Dialect>(
    exec: impl Executor<'c, Database = DB>,
    bulk_ref: &netauto_core::BulkRef,
) -> Result<()> {
    if exists(
        exec,
        BULK_EXISTS,
        DB::Text::from(bulk_ref.as_str().to_owned()),
    )
    .await?
    {
        Ok(())
    } else {
        Err(Error::bulk_not_found(bulk_ref))
    }
}

/// Why a cancel of job `id` changed nothing: it already finished, or it is gone.
pub(crate) async fn not_cancellable_job<'c, DB: Dialect>(
    exec: impl Executor<'c, Database = DB>,
    id: JobId,
) -> Error {
    match exists(exec, JOB_EXISTS, DB::Id::from(id.get())).await {
        Ok(true) => Conflict::JobFinished(id).into(),
        Ok(false) => Error::job_not_found(id),
        Err(e) => e,
    }
}
