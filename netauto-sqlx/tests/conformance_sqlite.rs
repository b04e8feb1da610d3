//! The core conformance suite on SQLite, in memory and in a file.
#![cfg(feature = "sqlite")]

use std::sync::atomic::{AtomicU32, Ordering};

use netauto_core::conformance::Backend;
use netauto_sqlx::sqlite::SqliteBackend;

async fn open(url: &str) -> Option<Backend> {
    let b = SqliteBackend::connect(url).await.expect("connect");
    b.migrate().await.expect("migrate");
    Some(Backend::new(b.queue(), b.store()))
}

mod memory {
    use super::*;

    async fn backend() -> Option<Backend> {
        open("sqlite::memory:").await
    }

    netauto_core::conformance_tests!(backend);
}

mod file {
    use super::*;

    static N: AtomicU32 = AtomicU32::new(0);

    async fn backend() -> Option<Backend> {
        let dir = std::env::temp_dir().join(format!("netauto-conformance-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("db-{}.sqlite", N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_file(&path);
        open(&format!("sqlite://{}", path.display())).await
    }

    netauto_core::conformance_tests!(backend);
}
