//! A worker SIGKILLed mid-bulk on PostgreSQL; a second one takes over after the lease expires.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_worker_on_postgres_loses_nothing_and_repeats_nothing() {
    let Some(db) = common::Db::postgres().await else {
        return;
    };
    common::crash_scenario(db).await;
}
