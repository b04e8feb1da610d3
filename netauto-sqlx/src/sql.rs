//! Statements written once for both backends: existence checks and the fencing of job and
//! run writes. [`Dialect`] says how each backend binds what differs (timestamps, attempt
//! numbers) and holds the SQL text that differs only in its placeholders.

use chrono::{DateTime, Utc};
use netauto_core::{Conflict, Error, JobId, Result, RunId};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use crate::error::db;
use crate::rows::StoredRow;

/// What the statements of this module need to know of a backend.
pub(crate) trait Dialect: Database<Arguments: IntoArguments<Self>, Row: StoredRow> {
    /// A timestamp as bound.
    type Time: for<'q> Encode<'q, Self> + Type<Self> + Send;
    /// An attempt number as bound.
    type Attempt: for<'q> Encode<'q, Self> + Type<Self> + Send;
    /// An id as bound (`i64` in both backends).
    type Id: for<'q> Encode<'q, Self> + Type<Self> + Send + From<i64>;
    /// A text as bound (`String` in both backends).
    type Text: for<'q> Encode<'q, Self> + Type<Self> + Send + From<String>;

    /// `SELECT 1 FROM jobs WHERE id = ?`.
    const JOB_EXISTS: &'static str;
    /// `SELECT 1 FROM runs WHERE id = ?`.
    const RUN_EXISTS: &'static str;
    /// `SELECT 1 FROM bulks WHERE ref = ?`.
    const BULK_EXISTS: &'static str;
    /// `SELECT 1` if a table of the name bound exists (in the schema searched first).
    const TABLE_EXISTS: &'static str;

    /// Binds a timestamp.
    fn time(t: DateTime<Utc>) -> Self::Time;
    /// Binds an attempt number.
    fn attempt(attempt: u32) -> Self::Attempt;
    /// The rows a statement changed.
    fn rows_affected(done: &Self::QueryResult) -> u64;
}

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
    match exists(exec, DB::JOB_EXISTS, DB::Id::from(id.get())).await {
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
    match exists(exec, DB::RUN_EXISTS, DB::Id::from(id.get())).await {
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
        DB::BULK_EXISTS,
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
    match exists(exec, DB::JOB_EXISTS, DB::Id::from(id.get())).await {
        Ok(true) => Conflict::JobFinished(id).into(),
        Ok(false) => Error::job_not_found(id),
        Err(e) => e,
    }
}
