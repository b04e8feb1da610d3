//! What retention reads and deletes in [`PgRunStore`](super::PgRunStore): written once for both
//! backends.

pub(super) use crate::shared::retention::{
    aged_footprints, delete_runs, device_footprints, device_totals,
};
