//! The library side of the `netauto` command line: the parts worth testing (and fuzzing) from
//! outside the binary.
//!
//! Today that is [`inventory`], the CSV/YAML/JSON parser behind `netauto devices import`.

pub mod inventory;
