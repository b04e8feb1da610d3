//! Identifiers: database ids as newtypes and the unguessable [`BulkRef`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! int_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// The raw database id.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<i64> for $name {
            fn from(id: i64) -> Self {
                Self(id)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim().parse().map(Self)
            }
        }
    };
}

int_id!(
    /// Identifies a [`Device`](crate::Device).
    DeviceId
);
int_id!(
    /// Identifies a [`Run`](crate::Run): one command executed on one device.
    RunId
);
int_id!(
    /// Identifies a [`Job`](crate::Job) in a [`JobQueue`](crate::JobQueue).
    JobId
);

/// Opaque, URL-safe, unguessable reference to a bulk run (128 random bits as 32 lowercase hex
/// characters).
///
/// A `BulkRef` is what operators see in `/bulk/<ref>` URLs; it is random so that knowing one
/// bulk's reference says nothing about another's.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BulkRef(String);

/// Length in characters of a [`BulkRef`].
const BULK_REF_LEN: usize = 32;

impl BulkRef {
    /// A new random reference drawn from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot supply random bytes, which leaves no safe way
    /// to make an unguessable reference.
    #[allow(clippy::expect_used)]
    pub fn generate() -> Self {
        let mut raw = [0u8; BULK_REF_LEN / 2];
        getrandom::fill(&mut raw).expect("the OS random number generator is unavailable");
        let mut s = String::with_capacity(BULK_REF_LEN);
        for b in raw {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        Self(s)
    }

    /// Parses a reference, accepting exactly 32 lowercase hex characters.
    pub fn parse(s: &str) -> Result<Self, InvalidBulkRef> {
        if s.len() == BULK_REF_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidBulkRef(s.chars().take(64).collect()))
        }
    }

    /// The reference as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The progress topic of this bulk, `bulk:<ref>`.
    pub fn topic(&self) -> String {
        format!("bulk:{}", self.0)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for BulkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BulkRef({})", self.0)
    }
}

impl fmt::Display for BulkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BulkRef {
    type Err = InvalidBulkRef;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for BulkRef {
    type Error = InvalidBulkRef;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<BulkRef> for String {
    fn from(r: BulkRef) -> Self {
        r.0
    }
}

/// A string that is not a valid [`BulkRef`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid bulk reference {0:?}: expected 32 lowercase hex characters")]
pub struct InvalidBulkRef(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_refs_parse_and_differ() {
        let a = BulkRef::generate();
        let b = BulkRef::generate();
        assert_ne!(a, b);
        assert_eq!(BulkRef::parse(a.as_str()), Ok(a.clone()));
        assert_eq!(a.topic(), format!("bulk:{a}"));
    }

    #[test]
    fn bad_refs_are_rejected() {
        for bad in [
            "",
            "abc",
            "../../etc/passwd",
            &"A".repeat(32),
            &"0".repeat(33),
        ] {
            assert!(BulkRef::parse(bad).is_err(), "{bad:?}");
        }
        let json: Result<BulkRef, _> = serde_json::from_str("\"zz\"");
        assert!(json.is_err());
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!("42".parse::<DeviceId>(), Ok(DeviceId(42)));
        assert_eq!(RunId(7).to_string(), "7");
        assert_eq!(serde_json::to_string(&JobId(3)).unwrap(), "3");
    }
}
