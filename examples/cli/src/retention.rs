//! `netauto retention plan|run`: what a purge would delete and why, and the purge itself.

use std::sync::Arc;

use chrono::Utc;
use netauto_core::retention::RetentionWorker;
use netauto_core::retention::{PurgeReason, RetentionConfig};
use netauto_core::{Error, RunStore};
use serde::Serialize;

use crate::table::Table;

/// One planned deletion with its device and size (looked up in the store).
#[derive(Debug, Serialize)]
struct Deletion {
    run_id: i64,
    device_id: i64,
    reason: PurgeReason,
    bytes: u64,
    ts: chrono::DateTime<Utc>,
}

/// The machine-readable plan of `retention plan --json`.
#[derive(Debug, Serialize)]
struct PlanJson {
    now: chrono::DateTime<Utc>,
    cutoff: chrono::DateTime<Utc>,
    max_days: u32,
    max_bytes: u64,
    deletions: Vec<Deletion>,
    runs_age: u64,
    runs_bytes: u64,
    bytes_age: u128,
    bytes_bytes: u128,
    devices_over_cap_before: u64,
    devices_over_cap_after: u64,
    unresolved_devices: Vec<i64>,
}

/// Dry run: prints what a purge now would delete (a table, or JSON).
pub(crate) async fn plan(store: Arc<dyn RunStore>, json: bool) -> anyhow::Result<()> {
    let config = RetentionConfig::from_env()?;
    let worker = RetentionWorker::new(store.clone(), config.clone());
    let plan = worker.plan(Utc::now()).await?;
    let mut deletions = Vec::with_capacity(plan.deletions.len());
    for d in &plan.deletions {
        match store.run(d.run_id).await {
            Ok(run) => deletions.push(Deletion {
                run_id: d.run_id.0,
                device_id: run.device_id.0,
                reason: d.reason,
                bytes: run.bytes,
                ts: d.ts,
            }),
            // Deleted since planning (a purge elsewhere): nothing left to delete.
            Err(Error::NotFound { .. } | Error::RunGone(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if json {
        let out = PlanJson {
            now: plan.now,
            cutoff: plan.cutoff,
            max_days: config.max_days(),
            max_bytes: config.max_bytes(),
            deletions,
            runs_age: plan.age.runs,
            runs_bytes: plan.bytes.runs,
            bytes_age: plan.age.bytes,
            bytes_bytes: plan.bytes.bytes,
            devices_over_cap_before: plan.devices_over_cap_before,
            devices_over_cap_after: plan.devices_over_cap_after,
            unresolved_devices: plan.unresolved.iter().map(|d| d.0).collect(),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "policy: delete runs finished before {} ({} days); keep at most {} bytes per device",
        plan.cutoff.to_rfc3339(),
        config.max_days(),
        config.max_bytes()
    );
    let mut table = Table::new(&["run_id", "device_id", "reason", "bytes", "ts"]);
    for d in &deletions {
        table.row(vec![
            d.run_id.to_string(),
            d.device_id.to_string(),
            reason(d.reason).to_owned(),
            d.bytes.to_string(),
            d.ts.to_rfc3339(),
        ]);
    }
    if !deletions.is_empty() {
        print!("{}", table.render());
    }
    println!(
        "would delete {} runs by age ({} bytes) and {} runs by byte cap ({} bytes); {} devices over the cap, {} unresolved",
        plan.age.runs,
        plan.age.bytes,
        plan.bytes.runs,
        plan.bytes.bytes,
        plan.devices_over_cap_before,
        plan.unresolved.len()
    );
    Ok(())
}

/// Purges now, in batches, and prints what was deleted.
pub(crate) async fn run(store: Arc<dyn RunStore>) -> anyhow::Result<()> {
    let worker = RetentionWorker::new(store, RetentionConfig::from_env()?);
    let r = worker.purge(Utc::now(), false).await?;
    println!(
        "deleted {} runs by age ({} bytes) and {} runs by byte cap ({} bytes) in {} batches; {} kept because they changed since planning; {} devices unresolved",
        r.deleted_age.runs,
        r.deleted_age.bytes,
        r.deleted_bytes.runs,
        r.deleted_bytes.bytes,
        r.batches,
        r.kept_by_guard,
        r.plan.unresolved.len()
    );
    Ok(())
}

fn reason(r: PurgeReason) -> &'static str {
    match r {
        PurgeReason::Age => "age",
        PurgeReason::Bytes => "bytes",
    }
}
