//! The four backend traits — [`JobQueue`](crate::JobQueue), [`RunStore`](crate::RunStore),
//! [`NetworkClient`](crate::NetworkClient), [`ProgressSink`](crate::ProgressSink) — with the
//! event and option types they exchange, and the in-process [`LocalProgressHub`](crate::LocalProgressHub).

pub(crate) mod hub;
pub(crate) mod network;
pub(crate) mod progress;
pub(crate) mod queue;
pub(crate) mod store;
