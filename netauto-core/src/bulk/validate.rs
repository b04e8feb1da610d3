//! Bulk input validation and job chunking: pure functions, no I/O.

use std::collections::HashSet;
use std::num::NonZeroUsize;

use crate::error::{CommandError, ValidationError};
use crate::model::ids::DeviceId;

/// Longest command accepted, in bytes after trimming.
pub const MAX_COMMAND_BYTES: usize = 4096;
/// Most devices one bulk may hold (after de-duplication).
pub const MAX_BULK_DEVICES: usize = 100_000;
/// Devices per bulk job by default.
pub const DEFAULT_CHUNK_SIZE: NonZeroUsize = match NonZeroUsize::new(50) {
    Some(n) => n,
    None => unreachable!(),
};

/// Checks a command line and answers it trimmed: non-empty, at most
/// [`MAX_COMMAND_BYTES`], no NUL, no line break, no other control character.
///
/// ```
/// use netauto_core::bulk::validate_command;
/// use netauto_core::CommandError;
///
/// assert_eq!(validate_command("  show version \n").unwrap(), "show version");
/// assert_eq!(validate_command("show run\nreload"), Err(CommandError::Newline { at: 8 }));
/// ```
pub fn validate_command(command: &str) -> Result<&str, CommandError> {
    let cmd = command.trim();
    if cmd.is_empty() {
        return Err(CommandError::Empty);
    }
    if cmd.len() > MAX_COMMAND_BYTES {
        return Err(CommandError::TooLong {
            len: cmd.len(),
            max: MAX_COMMAND_BYTES,
        });
    }
    for (at, ch) in cmd.char_indices() {
        match ch {
            '\0' => return Err(CommandError::Nul { at }),
            '\n' | '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => {
                return Err(CommandError::Newline { at });
            }
            c if c.is_control() => return Err(CommandError::Control { ch: c, at }),
            _ => {}
        }
    }
    Ok(cmd)
}

/// De-duplicates ids, keeping the first occurrence of each, in order.
pub fn dedup_ids(ids: &[DeviceId]) -> Vec<DeviceId> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

/// A bulk request that passed [`BulkRequest::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidBulk {
    /// The distinct device ids, first-seen order.
    pub device_ids: Vec<DeviceId>,
    /// The trimmed command.
    pub command: String,
    /// The trimmed requester.
    pub requested_by: String,
}

/// What an operator asked for: one command on many devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRequest<'a> {
    /// Device ids as given (duplicates allowed).
    pub device_ids: &'a [DeviceId],
    /// The command as typed.
    pub command: &'a str,
    /// Who asks.
    pub requested_by: &'a str,
}

impl BulkRequest<'_> {
    /// Checks everything that needs no store: the command, the requester, the number of
    /// distinct ids. Whether the ids exist is checked by the service, which answers
    /// [`ValidationError::UnknownDevices`] listing all unknown ones.
    pub fn validate(&self) -> Result<ValidBulk, ValidationError> {
        let command = validate_command(self.command)?.to_owned();
        let requested_by = self.requested_by.trim();
        if requested_by.is_empty() {
            return Err(ValidationError::EmptyRequestedBy);
        }
        if self.device_ids.is_empty() {
            return Err(ValidationError::NoDevices);
        }
        let device_ids = dedup_ids(self.device_ids);
        if device_ids.len() > MAX_BULK_DEVICES {
            return Err(ValidationError::TooManyDevices {
                count: device_ids.len(),
                max: MAX_BULK_DEVICES,
            });
        }
        Ok(ValidBulk {
            device_ids,
            command,
            requested_by: requested_by.to_owned(),
        })
    }
}

/// Splits ids into jobs of at most `size`, in order.
pub fn chunk_ids(ids: &[DeviceId], size: NonZeroUsize) -> impl Iterator<Item = &[DeviceId]> {
    ids.chunks(size.get())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ids(v: &[i64]) -> Vec<DeviceId> {
        v.iter().copied().map(DeviceId).collect()
    }

    #[test]
    fn each_bad_command_has_its_reason() {
        assert_eq!(validate_command(""), Err(CommandError::Empty));
        assert_eq!(validate_command(" \t "), Err(CommandError::Empty));
        let long = "x".repeat(MAX_COMMAND_BYTES + 1);
        assert_eq!(
            validate_command(&long),
            Err(CommandError::TooLong {
                len: 4097,
                max: 4096
            })
        );
        assert!(validate_command(&"x".repeat(MAX_COMMAND_BYTES)).is_ok());
        assert_eq!(
            validate_command("show\0ver"),
            Err(CommandError::Nul { at: 4 })
        );
        assert_eq!(
            validate_command("a\nb"),
            Err(CommandError::Newline { at: 1 })
        );
        assert_eq!(
            validate_command("a\rb"),
            Err(CommandError::Newline { at: 1 })
        );
        assert_eq!(
            validate_command("a\tb"),
            Err(CommandError::Control { ch: '\t', at: 1 })
        );
        assert_eq!(
            validate_command("a\u{1b}[2J"),
            Err(CommandError::Control {
                ch: '\u{1b}',
                at: 1
            })
        );
        assert_eq!(
            validate_command("a\u{9b}b"),
            Err(CommandError::Control {
                ch: '\u{9b}',
                at: 1
            })
        );
        assert_eq!(
            validate_command("show interfaces | include ä"),
            Ok("show interfaces | include ä")
        );
    }

    #[test]
    fn request_checks_requester_and_counts() {
        let one = ids(&[1]);
        let ok = BulkRequest {
            device_ids: &one,
            command: " show clock ",
            requested_by: " ann ",
        };
        assert_eq!(
            ok.validate().unwrap(),
            ValidBulk {
                device_ids: one.clone(),
                command: "show clock".into(),
                requested_by: "ann".into()
            }
        );
        let blank = BulkRequest {
            requested_by: "  ",
            ..ok.clone()
        };
        assert_eq!(blank.validate(), Err(ValidationError::EmptyRequestedBy));
        let none = BulkRequest {
            device_ids: &[],
            ..ok.clone()
        };
        assert_eq!(none.validate(), Err(ValidationError::NoDevices));
        let bad_cmd = BulkRequest {
            command: "",
            ..ok.clone()
        };
        assert_eq!(
            bad_cmd.validate(),
            Err(ValidationError::Command(CommandError::Empty))
        );

        let many: Vec<DeviceId> = (0..=MAX_BULK_DEVICES as i64).map(DeviceId).collect();
        let too_many = BulkRequest {
            device_ids: &many,
            ..ok.clone()
        };
        assert_eq!(
            too_many.validate(),
            Err(ValidationError::TooManyDevices {
                count: MAX_BULK_DEVICES + 1,
                max: MAX_BULK_DEVICES
            })
        );
        // Duplicates do not count against the limit.
        let mut dup = many[..MAX_BULK_DEVICES].to_vec();
        dup.extend_from_slice(&many[..10]);
        let dup_ok = BulkRequest {
            device_ids: &dup,
            ..ok
        };
        assert_eq!(
            dup_ok.validate().unwrap().device_ids.len(),
            MAX_BULK_DEVICES
        );
    }

    proptest! {
        #[test]
        fn chunks_cover_the_deduplicated_input_in_order(
            raw in proptest::collection::vec(0i64..200, 0..600),
            size in 1usize..120,
        ) {
            let input = ids(&raw);
            let deduped = dedup_ids(&input);
            let size = NonZeroUsize::new(size).unwrap();
            let chunks: Vec<&[DeviceId]> = chunk_ids(&deduped, size).collect();
            prop_assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= size.get()));
            prop_assert_eq!(chunks.len(), deduped.len().div_ceil(size.get()));
            let concat: Vec<DeviceId> = chunks.concat();
            prop_assert_eq!(&concat, &deduped);
            // First-seen order, no duplicates, nothing lost.
            let mut expected = Vec::new();
            for id in &input {
                if !expected.contains(id) {
                    expected.push(*id);
                }
            }
            prop_assert_eq!(concat, expected);
        }

        #[test]
        fn accepted_commands_are_trimmed_printable_and_bounded(s in "\\PC{0,64}") {
            if let Ok(cmd) = validate_command(&s) {
                prop_assert_eq!(cmd, s.trim());
                prop_assert!(!cmd.is_empty() && cmd.len() <= MAX_COMMAND_BYTES);
                prop_assert!(!cmd.chars().any(char::is_control));
            }
        }

        #[test]
        fn any_control_character_is_rejected(
            prefix in "[a-z ]{0,10}",
            ctrl in prop_oneof![Just('\0'), Just('\n'), Just('\r'), (1u8..32).prop_map(char::from), Just('\u{7f}')],
            suffix in "[a-z]{1,10}",
        ) {
            let cmd = format!("x{prefix}{ctrl}{suffix}");
            prop_assert!(validate_command(&cmd).is_err());
        }
    }
}
