//! Full-text search over stored output: [`RunLog::search_runs`](crate::RunLog::search_runs).

use super::*;
use crate::error::{Error, ValidationError};
use crate::model::run::{OutputStream, Run, RunFinish, RunStatus};
use crate::retention::DeleteGuard;
use crate::search::SearchQuery;
use crate::{NewDevice, RunId};

async fn run_with(b: &Backend, device: DeviceId, command: &str, chunks: &[&str], secs: i64) -> Run {
    let mut new = new_run(device);
    new.command = command.into();
    let run = b.store.create_run(new, at(secs)).await.expect("create_run");
    for c in chunks {
        b.store
            .append_chunk(run.id, OutputStream::Stdout, c.as_bytes(), at(secs))
            .await
            .expect("append_chunk");
    }
    run
}

async fn finish(b: &Backend, id: RunId, secs: i64) {
    b.store
        .finish_run(
            id,
            RunFinish::new(RunStatus::Ok).with_exit_status(0),
            at(secs),
        )
        .await
        .expect("finish_run");
}

async fn ids(b: &Backend, query: &SearchQuery) -> Vec<RunId> {
    b.store
        .search_runs(query)
        .await
        .unwrap_or_else(|e| panic!("search_runs({:?}) failed: {e}", query.text))
        .into_iter()
        .map(|r| r.id)
        .collect()
}

fn query(text: &str) -> SearchQuery {
    SearchQuery::new(text).expect("a valid search text")
}

/// Output is found by a case-insensitive substring, newest first, as soon as it is
/// stored (a running run too), across a chunk boundary, with LIKE and FTS syntax taken
/// literally; short texts are refused.
pub async fn search_finds_substrings_in_stored_output(b: &Backend) {
    let d = devices(b, "search-find", 2).await;
    let config = run_with(
        b,
        d[0],
        "show running-config",
        &["hostname edge-1\ninterface Gi0/1\n ip address 10.77.0.1 255.255.255.0\n"],
        1,
    )
    .await;
    finish(b, config.id, 2).await;
    // A line split between two chunks, and a run still running.
    let split = run_with(
        b,
        d[1],
        "show interfaces description",
        &[
            "Gi0/1 up up  uplink to CORE-",
            "77 via 100%_cable \"quoted\"\n",
        ],
        3,
    )
    .await;
    assert_eq!(
        ids(b, &query("IP ADDRESS 10.77.0.1")).await,
        [config.id],
        "case-insensitive substring with spaces and dots"
    );
    assert_eq!(
        ids(b, &query("uplink to core-77")).await,
        [split.id],
        "a line split between chunks, in a run still running"
    );
    assert_eq!(
        ids(b, &query("GI0/1")).await,
        [split.id, config.id],
        "newest first"
    );
    assert_eq!(
        ids(b, &query("100%_cable")).await,
        [split.id],
        "% and _ are literal"
    );
    assert_eq!(
        ids(b, &query("100%Xcable")).await,
        Vec::<RunId>::new(),
        "% is not a wildcard"
    );
    assert_eq!(
        ids(b, &query("\"quoted\"")).await,
        [split.id],
        "quotes are literal"
    );
    assert_eq!(
        ids(b, &query("address 10.77.0.2")).await,
        Vec::<RunId>::new()
    );
    assert!(
        SearchQuery::new("edge-1\ninterface").is_err(),
        "one line only"
    );
}

/// Filters (device, platform, command, time) and keyset pages.
pub async fn search_filters_and_pages(b: &Backend) {
    let router = b
        .store
        .create_device(NewDevice::new("search-r1", "10.0.0.1", "cisco_ios", "ops"))
        .await
        .expect("create_device");
    let server = devices(b, "search-filter", 1).await[0];
    let mut runs = Vec::new();
    for i in 0..7 {
        let (device, command) = if i % 2 == 0 {
            (router.id, "show version")
        } else {
            (server, "uname -a")
        };
        let output = format!("line one\nSerial Number: FTX-SEARCH-{i}\nline three\n");
        let run = run_with(b, device, command, &[&output], 10 * i).await;
        finish(b, run.id, 10 * i + 1).await;
        runs.push(run.id);
    }
    let newest_first: Vec<RunId> = runs.iter().rev().copied().collect();
    let all = query("ftx-search-");
    assert_eq!(ids(b, &all).await, newest_first);

    let mut q = all.clone();
    q.device = Some(router.id);
    assert_eq!(
        ids(b, &q).await,
        [runs[6], runs[4], runs[2], runs[0]],
        "device"
    );
    let mut q = all.clone();
    q.platform = Some("cisco_ios".into());
    assert_eq!(
        ids(b, &q).await,
        [runs[6], runs[4], runs[2], runs[0]],
        "platform"
    );
    let mut q = all.clone();
    q.platform = Some("juniper_junos".into());
    assert_eq!(ids(b, &q).await, Vec::<RunId>::new(), "platform nobody has");
    let mut q = all.clone();
    q.command = Some("UNAME".into());
    assert_eq!(ids(b, &q).await, [runs[5], runs[3], runs[1]], "command");
    let mut q = all.clone();
    q.since = Some(at(20));
    q.until = Some(at(50));
    assert_eq!(
        ids(b, &q).await,
        [runs[4], runs[3], runs[2]],
        "start time in [since, until)"
    );

    let mut q = all.clone();
    q.limit = 3;
    let mut pages = Vec::new();
    loop {
        let page = ids(b, &q).await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3, "page size");
        q.before = page.last().copied();
        pages.extend(page);
    }
    assert_eq!(
        pages, newest_first,
        "keyset pages cover every run once, in order"
    );

    let mut q = all.clone();
    q.text = "ab".into();
    assert_err!(
        b.store.search_runs(&q).await,
        Error::Validation(ValidationError::Field { .. }),
        "a text under three characters"
    );
}

/// A run that retention deletes is never found again (its index entries go with it);
/// the others still are.
pub async fn search_never_finds_purged_runs(b: &Backend) {
    let d = devices(b, "search-purge", 1).await[0];
    let mut runs = Vec::new();
    for i in 0..3 {
        let run = run_with(
            b,
            d,
            "show clock",
            &[
                "first chunk\npurge-marker-",
                "alpha and more\n",
                "tail purge-marker-beta\n",
            ],
            i,
        )
        .await;
        finish(b, run.id, i + 1).await;
        runs.push(run.id);
    }
    let marker = query("purge-marker-alpha");
    assert_eq!(ids(b, &marker).await, [runs[2], runs[1], runs[0]]);
    b.store
        .delete_runs(&[runs[0], runs[2]], DeleteGuard::Finished)
        .await
        .expect("delete_runs");
    assert_eq!(
        ids(b, &marker).await,
        [runs[1]],
        "purged runs are not found"
    );
    assert_eq!(ids(b, &query("purge-marker-beta")).await, [runs[1]]);
    b.store
        .delete_runs(&[runs[1]], DeleteGuard::Finished)
        .await
        .expect("delete_runs");
    assert_eq!(ids(b, &query("purge-marker")).await, Vec::<RunId>::new());
}

/// One device with many runs (more than a backend may look up one by one), only the
/// oldest holding the text, among other devices' runs that all hold it.
pub async fn search_one_device_among_many_runs(b: &Backend) {
    let d = devices(b, "search-many", 2).await;
    let mut oldest = None;
    for i in 0..70 {
        let text = if i == 0 {
            "the needle-xyz here\n"
        } else {
            "hay\n"
        };
        let run = run_with(b, d[0], "show log", &[text], i).await;
        finish(b, run.id, i).await;
        oldest.get_or_insert(run.id);
        let other = run_with(b, d[1], "show log", &["needle-xyz\n"], i).await;
        finish(b, other.id, i).await;
    }
    let mut q = query("NEEDLE-XYZ");
    q.device = Some(d[0]);
    q.limit = 5;
    assert_eq!(ids(b, &q).await, [oldest.unwrap()]);
    q.device = Some(d[1]);
    assert_eq!(ids(b, &q).await.len(), 5);
}
