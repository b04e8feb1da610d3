//! The backend conformance suite of netauto-core, run against the in-memory backend.

use netauto_core::conformance::Backend;

/// A fresh queue and store for each check.
async fn memory_backend() -> Option<Backend> {
    let (queue, store) = netauto_memory::backend();
    Some(Backend::new(queue, store))
}

netauto_core::conformance_tests!(memory_backend);
