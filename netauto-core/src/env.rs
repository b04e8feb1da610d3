//! Environment variables: one naming rule for every knob.
//!
//! Every variable is `NETAUTO_<NAME>` — except the three the original design names, which keep
//! their names exactly: `NET_AUTO_RUN_MAX_DAYS`, `NET_AUTO_RUN_MAX_BYTES` and
//! `NET_AUTO_RETENTION_CRON`. A variable that shipped under another name is still read under
//! it when the new name is unset (today only `NET_AUTO_QUEUES`, now `NETAUTO_QUEUES`); the
//! new name wins when both are set. A set variable that cannot be used is a [`ConfigError`]
//! naming the variable that was read.

use crate::error::ConfigError;

/// `var`'s value, `None` when unset; a value that is not UTF-8 is an error.
pub(crate) fn read(var: &'static str) -> Result<Option<String>, ConfigError> {
    match std::env::var(var) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(ConfigError {
            var,
            value: v.to_string_lossy().into_owned(),
            reason: "not valid UTF-8".into(),
        }),
    }
}

/// The value of `var`, or else of its older name `legacy`, with the name that was read.
pub(crate) fn read_either(
    var: &'static str,
    legacy: &'static str,
) -> Result<Option<(&'static str, String)>, ConfigError> {
    either(var, legacy, read)
}

fn either(
    var: &'static str,
    legacy: &'static str,
    read: impl Fn(&'static str) -> Result<Option<String>, ConfigError>,
) -> Result<Option<(&'static str, String)>, ConfigError> {
    if let Some(v) = read(var)? {
        return Ok(Some((var, v)));
    }
    Ok(read(legacy)?.map(|v| (legacy, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(
        vars: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&'static str) -> Result<Option<String>, ConfigError> {
        move |name| {
            Ok(vars
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned()))
        }
    }

    #[test]
    fn the_new_name_wins_and_the_old_one_is_still_read() {
        let both = lookup(&[("NETAUTO_QUEUES", "bulk:2"), ("NET_AUTO_QUEUES", "bulk:9")]);
        assert_eq!(
            either("NETAUTO_QUEUES", "NET_AUTO_QUEUES", both).unwrap(),
            Some(("NETAUTO_QUEUES", "bulk:2".to_owned()))
        );
        let old = lookup(&[("NET_AUTO_QUEUES", "bulk:9")]);
        assert_eq!(
            either("NETAUTO_QUEUES", "NET_AUTO_QUEUES", old).unwrap(),
            Some(("NET_AUTO_QUEUES", "bulk:9".to_owned()))
        );
        assert_eq!(
            either("NETAUTO_QUEUES", "NET_AUTO_QUEUES", lookup(&[])).unwrap(),
            None
        );
    }
}
