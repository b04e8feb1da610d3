//! Test support: a fresh PostgreSQL schema per test.
#![allow(dead_code)]

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::PgConnectOptions;

pub(crate) use netauto_core::testing::postgres_url as pg_url;

static N: AtomicU32 = AtomicU32::new(0);

/// Connect options for a new, empty, migrated-on-demand schema of its own.
pub(crate) async fn fresh_schema() -> Option<PgConnectOptions> {
    let url = pg_url()?;
    let schema = format!(
        "t_{}_{}_{:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand_u32()
    );
    netauto_sqlx::postgres::create_schema(&url, &schema)
        .await
        .expect("create the test schema");
    let opts = PgConnectOptions::from_str(&url)
        .expect("test URL")
        .options([("search_path", schema.as_str())]);
    Some(opts)
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(13)
}
