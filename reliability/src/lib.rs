//! Fault, crash and load tests of netauto (in `tests/`), and what they share with the
//! `crash_worker` binary: connecting to a database by URL ([`backend`]), a progress sink that
//! prints every bulk event ([`PrintingSink`]), a store whose purge batches fail or slow down on
//! demand ([`FaultyStore`]), and process, simulator and database helpers ([`harness`]).

pub mod backend;
pub mod faulty;
pub mod harness;
pub mod sink;

pub use backend::TestDb;
pub use faulty::FaultyStore;
pub use sink::PrintingSink;
