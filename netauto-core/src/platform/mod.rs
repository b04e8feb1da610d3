//! Platforms as data: how commands run on a kind of device and how its output reads.
//!
//! A [`Platform`] is one TOML file: name and aliases, transport (`exec` or `shell`), prompt
//! patterns per privilege level, privilege escalation, commands run after login (paging off),
//! pager prompts, failure patterns (an output line matching one makes the run `failed` with
//! kind `command_rejected`), prompt answers (typed only when a bulk allows it), line ending,
//! ANSI stripping, volatile lines (ignored by diffs) and secret patterns (redacted when the
//! server is asked to), plus a persona: how a real device of the kind behaves, which the
//! simulator plays and the platform conformance suite checks.
//!
//! [`Platforms`] holds the shipped definitions (`netauto-core/platforms/*.toml`, compiled in)
//! and the operator's own from `NETAUTO_PLATFORMS_DIR`, which replace shipped ones of the same
//! name. How to write one: `netauto-core/platforms/README.md`.
//!
//! ```
//! use netauto_core::platform::{Platforms, Transport};
//!
//! let platforms = Platforms::builtin();
//! let ios = platforms.get("ios").unwrap(); // an alias of cisco_ios
//! assert_eq!(ios.name, "cisco_ios");
//! assert_eq!(ios.transport, Transport::Shell);
//! assert!(ios.failure_in("% Invalid input detected at '^' marker.").is_some());
//! assert!(platforms.require("vendor_x").unwrap_err().to_string().contains("cisco_ios"));
//! ```

mod builtin;
mod definition;
mod registry;
mod text;

pub use definition::{
    Answer, DefinitionError, Escalation, Pattern, Persona, Platform, Prompts, REDACTED, Terminal,
    Transport,
};
pub use registry::{GENERIC, LoadError, PLATFORMS_DIR_VAR, Platforms, UnknownPlatform};
pub use text::AnsiStripper;
