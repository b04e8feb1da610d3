//! The core conformance suite on PostgreSQL, each check in a fresh schema.
#![cfg(feature = "postgres")]

mod support;

use netauto_core::conformance::Backend;
use netauto_sqlx::postgres::PgBackend;

async fn backend() -> Option<Backend> {
    let opts = support::fresh_schema().await?;
    let b = PgBackend::connect_with(opts, 12).await.expect("connect");
    b.migrate().await.expect("migrate");
    Some(Backend::new(b.queue(), b.store()))
}

netauto_core::conformance_tests!(backend);

/// LISTEN/NOTIFY progress (channels are database-wide: the checks use fresh topics).
async fn pg_progress() -> Option<std::sync::Arc<dyn netauto_core::ProgressSink>> {
    let opts = support::fresh_schema().await?;
    let b = PgBackend::connect_with(opts, 4).await.expect("connect");
    b.migrate().await.expect("migrate");
    Some(std::sync::Arc::new(b.progress()))
}

mod progress {
    netauto_core::progress_conformance_tests!(super::pg_progress);
}
