//! The backend traits in one import, for code that calls them on concrete types
//! (`InMemoryRunStore`, `SqliteRunStore`, …): `use netauto_core::prelude::*;`. Code holding
//! `Arc<dyn RunStore>` needs only `RunStore`.

pub use crate::{
    BulkStore, DeviceStore, JobQueue, NetworkClient, ProgressSink, RetentionStore, RunLog, RunStore,
};
