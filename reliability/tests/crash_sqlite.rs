//! A worker SIGKILLed mid-bulk on SQLite; a second one takes over after the lease expires.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_worker_on_sqlite_loses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::crash_scenario(common::Db::sqlite(dir.path(), "crash.db")).await;
}
