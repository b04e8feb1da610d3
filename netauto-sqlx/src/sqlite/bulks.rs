//! Bulks, their devices' outcomes and their cancellation in [`SqliteRunStore`](super::PgRunStore):
//! written once for both backends.

pub(super) use crate::shared::bulks::{
    bulk, bulk_state, cancel_bulk, create_bulk, device_outcomes, record_outcome,
};
