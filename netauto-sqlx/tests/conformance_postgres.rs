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
