//! The concerns' statements written once for both backends, generic over the backend's
//! [`Pools`](crate::sql::Pools): where a statement's SQL differs, both texts stand side by
//! side ([`Dialect::pick`](crate::sql::Dialect::pick)). A backend's module for a concern
//! re-exports these and adds what it does its own way.

pub(crate) mod bulks;
pub(crate) mod devices;
pub(crate) mod queue;
pub(crate) mod retention;
pub(crate) mod runs;
pub(crate) mod search;
pub(crate) mod team;
pub(crate) mod tokens;
