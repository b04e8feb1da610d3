//! Devices of [`PgRunStore`](super::PgRunStore): written once for both backends.

pub(super) use crate::shared::devices::{
    create_device, create_devices, device, list_devices, unknown_devices,
};
