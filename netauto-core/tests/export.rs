//! Bulk exports against the in-memory backend: CSV and JSON rows per device (escaped,
//! formulas defused, pending devices included) and a tar that `tar` itself reads back with
//! each device's output byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use netauto_core::export::{ExportFormat, export_bulk};
use netauto_core::{
    BulkRef, BulkStore, DeviceOutcome, DeviceStore, NewBulk, NewDevice, NewRun, OutputStream,
    RunFinish, RunLog, RunStatus,
};
use netauto_memory::InMemoryRunStore;

/// A bulk of three devices: `r1/ok` ok (output in two chunks, with bytes that are not
/// UTF-8), `=cmd|evil` failed with an error message full of CSV syntax, `r3` not run yet.
async fn seeded() -> (InMemoryRunStore, BulkRef) {
    let store = InMemoryRunStore::new(netauto_memory::InMemoryJobQueue::new());
    let mut ids = Vec::new();
    for name in ["r1/ok", "=cmd|evil", "r3"] {
        ids.push(
            store
                .create_device(NewDevice::new(name, "10.0.0.1", "cisco_ios", "ops"))
                .await
                .unwrap()
                .id,
        );
    }
    let bulk_ref = BulkRef::generate();
    store
        .create_bulk(
            NewBulk {
                bulk_ref: bulk_ref.clone(),
                command: "show version".into(),
                requested_by: "alice".into(),
                device_ids: ids.clone(),
                limits: Default::default(),
                parent: None,
            },
            Vec::new(),
            Utc::now(),
        )
        .await
        .unwrap();
    for (i, id) in ids[..2].iter().enumerate() {
        let run = store
            .create_run(
                NewRun {
                    device_id: *id,
                    command: "show version".into(),
                    requested_by: "alice".into(),
                    bulk_ref: Some(bulk_ref.clone()),
                },
                Utc::now(),
            )
            .await
            .unwrap();
        let finish = if i == 0 {
            for piece in [&b"Cisco IOS\nuptime \xff\n"[..], b"last line, no newline"] {
                store
                    .append_chunk(run.id, OutputStream::Stdout, piece, Utc::now())
                    .await
                    .unwrap();
            }
            RunFinish::new(RunStatus::Ok).with_exit_status(0)
        } else {
            store
                .append_chunk(
                    run.id,
                    OutputStream::Stderr,
                    b"% Invalid input\n",
                    Utc::now(),
                )
                .await
                .unwrap();
            RunFinish::new(RunStatus::Failed)
                .with_error("command_rejected", "said \"no\", twice\nthen quit")
        };
        let run = store.finish_run(run.id, finish, Utc::now()).await.unwrap();
        store
            .record_outcome(
                &bulk_ref,
                DeviceOutcome {
                    device_id: *id,
                    run_id: Some(run.id),
                    status: run.status,
                    error_kind: run.error_kind.clone(),
                    recorded_at: Utc::now(),
                    truncated: false,
                },
            )
            .await
            .unwrap();
    }
    (store, bulk_ref)
}

async fn export(store: &InMemoryRunStore, bulk_ref: &BulkRef, format: ExportFormat) -> Vec<u8> {
    let bulk = store.bulk(bulk_ref).await.unwrap();
    let mut out = Vec::new();
    let done = export_bulk(store, &bulk, format, &mut out).await.unwrap();
    assert_eq!(done.bytes, out.len() as u64);
    out
}

#[tokio::test]
async fn csv_has_one_escaped_row_per_device_in_bulk_order() {
    let (store, bulk_ref) = seeded().await;
    let csv = String::from_utf8(export(&store, &bulk_ref, ExportFormat::Csv).await).unwrap();
    let lines: Vec<&str> = csv.split_inclusive('\n').collect();
    assert_eq!(
        lines[0],
        "device,device_id,host,platform,status,exit_status,error_kind,error,bytes,truncated,run_id,started_at,finished_at\n"
    );
    assert!(
        lines[1].starts_with("r1/ok,1,10.0.0.1,cisco_ios,ok,0,,,40,false,1,"),
        "{csv}"
    );
    assert!(
        csv.contains("'=cmd|evil,2,10.0.0.1,cisco_ios,failed,,command_rejected,\"said \"\"no\"\", twice\nthen quit\",16,false,2,"),
        "a formula is defused, quotes and line breaks quoted: {csv}"
    );
    assert!(
        csv.ends_with("r3,3,10.0.0.1,cisco_ios,pending,,,,0,false,,,\n"),
        "{csv}"
    );
}

#[tokio::test]
async fn json_is_an_array_of_rows() {
    let (store, bulk_ref) = seeded().await;
    let json = export(&store, &bulk_ref, ExportFormat::Json).await;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["device"], "r1/ok");
    assert_eq!(rows[0]["bytes"], 40);
    assert_eq!(rows[1]["status"], "failed");
    assert_eq!(rows[1]["error"], "said \"no\", twice\nthen quit");
    assert_eq!(rows[2]["status"], "pending");
    assert_eq!(rows[2]["run_id"], serde_json::Value::Null);
}

#[tokio::test]
async fn tar_holds_every_output_byte_for_byte_and_the_csv() {
    let (store, bulk_ref) = seeded().await;
    let tar = export(&store, &bulk_ref, ExportFormat::Tar).await;
    assert_eq!(tar.len() % 512, 0);
    let dir = std::env::temp_dir().join(format!("netauto-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bulk.tar");
    std::fs::write(&file, &tar).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&file)
        .arg("-C")
        .arg(&dir)
        .output()
        .expect("tar is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = dir.join(bulk_ref.as_str());
    assert_eq!(
        std::fs::read(root.join("r1_ok.txt")).unwrap(),
        b"Cisco IOS\nuptime \xff\nlast line, no newline"
    );
    assert_eq!(
        std::fs::read(root.join("_cmd_evil.txt")).unwrap(),
        b"% Invalid input\n"
    );
    assert!(
        !root.join("r3.txt").exists(),
        "a device without a run has no file"
    );
    let csv = std::fs::read_to_string(root.join("results.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        5,
        "header, three rows, one quoted line break: {csv}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
