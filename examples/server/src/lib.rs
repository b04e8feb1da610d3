//! netauto's example web app: an axum server that embeds the job runner (queues + cron) and
//! lets operators pick devices, run one command on all of them, watch every device finish
//! live and read each run's output.
//!
//! # Overview
//!
//! * [`App`] wires the services of `netauto-core` (the [`Bulk`](netauto_core::bulk::BulkService)
//!   service, the [`BulkJob`](netauto_core::bulk::BulkJob) and
//!   [`RetentionWorker`](netauto_core::retention::RetentionWorker) workers, a
//!   [`Runner`](netauto_core::runtime::Runner) with the retention cron) to any backend, and
//!   serves the pages and the JSON API from [`App::router`].
//! * [`Users`] holds the accounts (argon2 password hashes); sessions live in memory and every
//!   state-changing request carries a CSRF token.
//! * [`WebLimits`] bounds what one client can make the app do (login throttling, password
//!   checks at once, sessions, event streams); [`serve`](serve::serve) takes connections with
//!   a header-read timeout, a connection cap and a bounded graceful shutdown ([`ServeConfig`]).
//!
//! The binary (`src/main.rs`) picks the database from `DATABASE_URL` (SQLite file by default,
//! PostgreSQL when the URL says so) and, with `--demo`, starts the device simulator.

pub mod access;
mod api;
mod app;
mod assets;
mod auth;
pub mod config;
pub mod demo;
mod error;
mod event_data;
mod live;
mod login;
pub mod metrics;
mod pages;
mod retention;
pub mod serve;
mod session;
mod team;
mod text;
mod throttle;
mod tokens;
pub mod transport;
mod users;
pub mod webhooks;

pub use access::Access;
pub use app::{App, AppParts};
pub use config::{ServeConfig, WebLimits};
pub use metrics::{Metrics, MetricsLayer};
pub use team::{AUDIT_MAX_DAYS_VAR, DEFAULT_AUDIT_MAX_DAYS, audit_max_days_from_env};
pub use users::{MIN_PASSWORD, Users, UsersError, hash_password, hash_password_with};
