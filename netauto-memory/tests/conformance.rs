//! The backend conformance suite of netauto-core, run against the in-memory backend.

use netauto_core::conformance::Backend;

/// A fresh queue and store for each check.
async fn memory_backend() -> Option<Backend> {
    let (queue, store) = netauto_memory::backend();
    Some(Backend::new(queue, store))
}

netauto_core::conformance_tests!(memory_backend);

/// The in-process progress hub (memory and SQLite backends).
async fn local_hub() -> Option<std::sync::Arc<dyn netauto_core::ProgressSink>> {
    Some(std::sync::Arc::new(netauto_core::LocalProgressHub::new()))
}

mod progress {
    netauto_core::progress_conformance_tests!(super::local_hub);
}
