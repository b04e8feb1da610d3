//! The search index itself (not only what `search_runs` answers): its entries are written
//! with each chunk and leave with the chunks of a purged run, so it never grows with output
//! that is gone. (`search_runs` joins the runs, so a stale entry would not show there.)

use chrono::Utc;
use netauto_core::retention::DeleteGuard;
use netauto_core::{
    NewDevice, NewRun, OutputStream, RetentionStore, RunFinish, RunId, RunStatus, RunStore,
};

#[cfg(feature = "postgres")]
mod support;

/// Two runs whose output holds `marker`, split between chunks; answers their ids.
async fn two_runs(store: &dyn RunStore, marker: &str) -> [RunId; 2] {
    let device = store
        .create_device(NewDevice::new("index-1", "10.0.0.1", "cisco_ios", "ops"))
        .await
        .expect("create device");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let run = store
            .create_run(
                NewRun {
                    device_id: device.id,
                    command: "show run".into(),
                    requested_by: "test".into(),
                    bulk_ref: None,
                },
                Utc::now(),
            )
            .await
            .expect("create run");
        let (head, tail) = marker.split_at(4);
        for piece in [format!("first line\n{head}"), format!("{tail}\nlast\n")] {
            store
                .append_chunk(run.id, OutputStream::Stdout, piece.as_bytes(), Utc::now())
                .await
                .expect("append");
        }
        store
            .finish_run(
                run.id,
                RunFinish::new(RunStatus::Ok).with_exit_status(0),
                Utc::now(),
            )
            .await
            .expect("finish");
        ids.push(run.id);
    }
    [ids[0], ids[1]]
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_index_entries_leave_with_purged_runs() {
    use netauto_sqlx::sqlite::SqliteBackend;

    let b = SqliteBackend::connect("sqlite::memory:")
        .await
        .expect("connect");
    b.migrate().await.expect("migrate");
    let store = b.store();
    let runs = two_runs(&store, "serial-XYZ-123").await;
    let entries = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM run_search WHERE run_search MATCH '\"serial-xyz-123\"'",
        )
        .fetch_one(b.pool())
        .await
        .expect("count entries")
    };
    // The second chunk's entry holds the line carried over from the first.
    assert_eq!(entries().await, 2, "one entry per run holds the whole line");
    let last = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM run_search WHERE run_search MATCH 'last'",
    )
    .fetch_one(b.pool())
    .await
    .expect("count");
    assert_eq!(last, 2, "the second chunks are indexed too");
    store
        .delete_runs(&[runs[0]], DeleteGuard::Finished)
        .await
        .expect("delete");
    assert_eq!(entries().await, 1, "the purged run's entries are gone");
    store
        .delete_runs(&[runs[1]], DeleteGuard::Finished)
        .await
        .expect("delete");
    assert_eq!(entries().await, 0);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_index_entries_leave_with_purged_runs() {
    use netauto_sqlx::postgres::PgBackend;

    let Some(opts) = support::fresh_schema().await else {
        return;
    };
    let b = PgBackend::connect_with(opts, 4).await.expect("connect");
    b.migrate().await.expect("migrate");
    let store = b.store();
    let runs = two_runs(&store, "serial-XYZ-123").await;
    let entries = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM run_search WHERE body ILIKE '%serial-xyz-123%'",
        )
        .fetch_one(b.pool())
        .await
        .expect("count entries")
    };
    assert_eq!(entries().await, 2, "one entry per run holds the whole line");
    store
        .delete_runs(&[runs[0]], DeleteGuard::Finished)
        .await
        .expect("delete");
    assert_eq!(entries().await, 1, "the purged run's entries are gone");
    store
        .delete_runs(&[runs[1]], DeleteGuard::Finished)
        .await
        .expect("delete");
    assert_eq!(entries().await, 0);
}
