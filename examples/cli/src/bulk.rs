//! `netauto bulk run|show|cancel`: start a bulk, follow it live, print its per-device
//! outcomes, cancel it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use netauto_core::bulk::BulkService;
use netauto_core::follow::{BulkFollower, BulkUpdate, follow_bulk};
use netauto_core::runtime::QueueLimits;
use netauto_core::{
    Bulk, BulkCounters, BulkRef, DeviceId, LimitOverrides, Run, RunId, RunStatus, RunStore,
};
use netauto_sqlx::Database;

use crate::devices::{Selection, select};
use crate::ssh::SshArgs;
use crate::table::Table;
use crate::{terminal, worker};

/// A quiet spell after which the bulk's counters are checked in the store (covers feeds that
/// do not cross processes, like SQLite's in-process one when a separate `netauto worker` runs
/// the jobs).
const POLL: Duration = Duration::from_millis(500);

/// Exit code of `bulk run --wait` when some device did not finish `ok`.
pub(crate) const EXIT_DEVICES_FAILED: u8 = 3;

/// Everything `bulk run` needs.
#[derive(Debug)]
pub(crate) struct RunRequest<'a> {
    pub(crate) selection: Selection,
    pub(crate) command: &'a str,
    pub(crate) requested_by: &'a str,
    pub(crate) wait: bool,
    /// Run the jobs in this process while waiting, with this many at a time.
    pub(crate) local_worker: Option<usize>,
    pub(crate) ssh: &'a SshArgs,
    /// This bulk's own deadline and output cap.
    pub(crate) limits: LimitOverrides,
}

/// Starts a bulk and prints its reference; with `wait`, follows it to the end and answers
/// whether every device finished `ok`.
pub(crate) async fn run(db: &Database, req: RunRequest<'_>) -> anyhow::Result<bool> {
    let store = db.store();
    let ids = select(store.as_ref(), &req.selection).await?;
    let local = match (req.wait, req.local_worker) {
        (true, Some(n)) => Some(worker::runner(
            db,
            QueueLimits::empty().with("bulk", n),
            req.ssh,
            false,
        )?),
        _ => None,
    };
    let mut service = BulkService::new(store.clone(), db.progress());
    if let Some(runner) = &local {
        service = service.with_wake(runner.waker());
    }
    let bulk_ref = service
        .enqueue_with_limits(&ids, req.command, req.requested_by, req.limits)
        .await?;
    println!("{bulk_ref}");
    if !req.wait {
        eprintln!(
            "bulk {bulk_ref} enqueued on {} devices; a `netauto worker` runs it; follow it with `netauto bulk show {bulk_ref}`",
            ids.len()
        );
        return Ok(true);
    }
    // Subscribed (and the snapshot read) before any job runs: nothing is missed.
    let follower = follow_bulk(store.clone(), db.progress().as_ref(), &bulk_ref)
        .await?
        .with_resync_after(POLL);
    let handle = local.map(|r| r.start());
    let outcome = follow(follower, store.as_ref()).await;
    if let Some(handle) = handle {
        handle.shutdown().await;
    }
    let bulk = match outcome? {
        Some(bulk) => bulk,
        None => {
            eprintln!(
                "stopped waiting; the bulk goes on in any running worker: `netauto bulk show {bulk_ref}`, `netauto bulk cancel {bulk_ref}`"
            );
            std::process::exit(130);
        }
    };
    print_bulk(store.as_ref(), &bulk).await?;
    Ok(bulk.counters.all_ok())
}

/// `bulk cancel`: devices not started are recorded cancelled at once; sessions still running
/// are closed by whichever node runs them. With `wait`, follows the bulk to its end.
pub(crate) async fn cancel(db: &Database, bulk_ref: &BulkRef, wait: bool) -> anyhow::Result<()> {
    let store = db.store();
    let follower = follow_bulk(store.clone(), db.progress().as_ref(), bulk_ref)
        .await?
        .with_resync_after(POLL);
    let cancelled = BulkService::new(store.clone(), db.progress())
        .cancel(bulk_ref)
        .await?;
    let c = cancelled.counters;
    if !cancelled.newly_cancelled {
        eprintln!(
            "bulk {bulk_ref} was already cancelled or finished: {} ok, {} failed, {} cancelled, {} pending",
            c.ok, c.failed, c.cancelled, c.pending
        );
        return Ok(());
    }
    eprintln!(
        "bulk {bulk_ref} cancelled: {} devices that had not started are cancelled; {} running are being stopped by the nodes running them",
        cancelled.devices_cancelled, c.pending
    );
    if wait && c.pending > 0 {
        let Some(bulk) = follow(follower, store.as_ref()).await? else {
            std::process::exit(130);
        };
        print_bulk(store.as_ref(), &bulk).await?;
    }
    Ok(())
}

/// Follows a bulk until it completes (answering its final state) or Ctrl-C (answering `None`).
///
/// Each event costs O(1): the counters and the failures are kept from the events, and the
/// store is re-read only when events were missed (see [`BulkFollower`]); a quiet spell of
/// [`POLL`] checks the bulk's counters, which covers feeds that do not cross processes (SQLite
/// while a separate `netauto worker` runs the jobs).
async fn follow(mut follower: BulkFollower, store: &dyn RunStore) -> anyhow::Result<Option<Bulk>> {
    let names = device_names(store).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .context("progress bar template")?,
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let announce = |id: DeviceId, status: RunStatus, kind: Option<&str>| {
        if !status.is_ok() {
            bar.println(format!(
                "{}: {status}{}",
                names.get(&id).map_or_else(|| id.to_string(), Clone::clone),
                kind.map(|k| format!(" ({k})")).unwrap_or_default()
            ));
        }
    };
    let mut counters = BulkCounters::default();
    let mut seen: HashSet<DeviceId> = HashSet::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let update = tokio::select! {
            update = follower.next() => update,
            _ = &mut ctrl_c => {
                bar.abandon();
                return Ok(None);
            }
        };
        match update {
            None | Some(Ok(BulkUpdate::Summary { .. })) => break,
            Some(Err(e)) => return Err(e.into()),
            // A fresh snapshot comes next.
            Some(Ok(BulkUpdate::Lagged { .. })) => continue,
            Some(Ok(BulkUpdate::Snapshot(bulk))) => {
                counters = bulk.counters;
                bar.set_length(counters.total);
                for (id, o) in &bulk.outcomes {
                    if seen.insert(*id) {
                        announce(*id, o.status, o.error_kind.as_deref());
                    }
                }
            }
            Some(Ok(BulkUpdate::Progress {
                device_id,
                status,
                error_kind,
                ..
            })) => {
                if seen.insert(device_id) {
                    counters.count(status);
                    announce(device_id, status, error_kind.as_deref());
                }
            }
        }
        bar.set_position(counters.done());
        bar.set_message(if counters.cancelled > 0 {
            format!(
                "ok {} failed {} cancelled {}",
                counters.ok, counters.failed, counters.cancelled
            )
        } else {
            format!("ok {} failed {}", counters.ok, counters.failed)
        });
    }
    bar.finish();
    // The bulk as stored, once, for the table.
    Ok(Some(store.bulk(follower.bulk_ref()).await?))
}

async fn device_names(store: &dyn RunStore) -> anyhow::Result<HashMap<DeviceId, String>> {
    Ok(store
        .list_devices()
        .await?
        .into_iter()
        .map(|d| (d.id, d.name))
        .collect())
}

/// `bulk show`.
/// Prints one page of bulks, newest first; says on stderr how to get the next one.
pub(crate) async fn list(
    store: &dyn RunStore,
    query: &netauto_core::BulkQuery,
    json: bool,
) -> anyhow::Result<()> {
    let bulks = store.list_bulks(query).await?;
    let mut table = Table::new(&[
        "REF",
        "STARTED",
        "STATUS",
        "OK",
        "FAILED",
        "CANCELLED",
        "TOTAL",
        "BY",
        "COMMAND",
    ])
    .escaped(terminal::stdout_is_terminal());
    for b in &bulks {
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "bulk_ref": b.bulk_ref,
                    "created_at": b.created_at,
                    "finished_at": b.finished_at,
                    "cancelled_at": b.cancelled_at,
                    "status": b.status(),
                    "counters": b.counters,
                    "requested_by": b.requested_by,
                    "command": b.command,
                })
            );
        } else {
            table.row(vec![
                b.bulk_ref.to_string(),
                b.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                b.status().to_string(),
                b.counters.ok.to_string(),
                b.counters.failed.to_string(),
                b.counters.cancelled.to_string(),
                b.counters.total.to_string(),
                b.requested_by.clone(),
                b.command.clone(),
            ]);
        }
    }
    if !json {
        print!("{}", table.render());
    }
    if bulks.len() == query.page_size()
        && let Some(last) = bulks.last()
    {
        eprintln!("more: add --after {}", last.cursor());
    }
    Ok(())
}

pub(crate) async fn show(
    store: &dyn RunStore,
    bulk_ref: &BulkRef,
    json: bool,
) -> anyhow::Result<()> {
    let bulk = store.bulk(bulk_ref).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&bulk)?);
        return Ok(());
    }
    println!("bulk {}", bulk.bulk_ref);
    println!("command: {}", bulk.command);
    println!("requested by: {}", bulk.requested_by);
    println!("created: {}", bulk.created_at.to_rfc3339());
    if let Some(f) = bulk.finished_at {
        println!("finished: {}", f.to_rfc3339());
    }
    if let Some(c) = bulk.cancelled_at {
        println!("cancelled: {}", c.to_rfc3339());
    }
    if let Some(t) = bulk.limits.timeout() {
        println!("deadline: {t:?} per device");
    }
    if let Some(b) = bulk.limits.max_output {
        println!("output cap: {b} bytes per run");
    }
    print_bulk(store, &bulk).await
}

/// The per-device table and the counters.
async fn print_bulk(store: &dyn RunStore, bulk: &Bulk) -> anyhow::Result<()> {
    let names = device_names(store).await?;
    // Error messages may hold device text: escaped on a terminal.
    let mut table = Table::new(&[
        "device_id",
        "name",
        "status",
        "run_id",
        "exit",
        "bytes",
        "truncated",
        "error",
    ])
    .escaped(terminal::stdout_is_terminal());
    // Every run of the bulk in one query (not one per device).
    let runs: HashMap<RunId, Run> = store
        .bulk_runs(&bulk.bulk_ref, &bulk.device_ids)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    for id in &bulk.device_ids {
        let name = names.get(id).cloned().unwrap_or_default();
        let Some(outcome) = bulk.outcomes.get(id) else {
            table.row(vec![id.to_string(), name, "pending".into()]);
            continue;
        };
        let run = outcome.run_id.and_then(|r| runs.get(&r));
        let error = run
            .as_ref()
            .and_then(|r| r.error_message.clone())
            .or_else(|| outcome.error_kind.clone())
            .unwrap_or_default();
        table.row(vec![
            id.to_string(),
            name,
            outcome.status.to_string(),
            outcome.run_id.map(|r| r.to_string()).unwrap_or_default(),
            run.as_ref()
                .and_then(|r| r.exit_status)
                .map(|e| e.to_string())
                .unwrap_or_default(),
            run.as_ref()
                .map(|r| r.bytes.to_string())
                .unwrap_or_default(),
            if outcome.truncated { "yes" } else { "" }.to_owned(),
            error.lines().next().unwrap_or_default().to_owned(),
        ]);
    }
    print!("{}", table.render());
    let c = bulk.counters;
    let cancelled = if c.cancelled > 0 || bulk.cancelled_at.is_some() {
        format!("{} cancelled, ", c.cancelled)
    } else {
        String::new()
    };
    println!(
        "{} devices: {} ok, {} failed, {cancelled}{} pending{}",
        c.total,
        c.ok,
        c.failed,
        c.pending,
        if bulk.cancelled_at.is_some() {
            " (bulk cancelled)"
        } else {
            ""
        }
    );
    Ok(())
}

/// `bulk export`: the bulk's export to `output` or stdout.
pub(crate) async fn export(
    store: &dyn RunStore,
    bulk_ref: &BulkRef,
    format: netauto_core::export::ExportFormat,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use netauto_core::export::{ExportFormat, export_bulk};
    let bulk = store.bulk(bulk_ref).await?;
    let done = match output {
        Some(path) => {
            let mut file = tokio::fs::File::create(path)
                .await
                .with_context(|| format!("cannot create {}", path.display()))?;
            export_bulk(store, &bulk, format, &mut file).await?
        }
        None => {
            if format == ExportFormat::Tar && terminal::stdout_is_terminal() {
                anyhow::bail!(
                    "a tar archive is not written to a terminal: use --output FILE or a pipe"
                );
            }
            export_bulk(store, &bulk, format, &mut tokio::io::stdout()).await?
        }
    };
    eprintln!(
        "exported bulk {bulk_ref}: {} devices, {} bytes ({format})",
        done.devices, done.bytes
    );
    Ok(())
}
