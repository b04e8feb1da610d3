//! The transport outside demo mode: netauto-ssh's client with its defaults (strict
//! known_hosts, credentials from `NETAUTO_SSH_<REF>_PASSWORD`/`_KEY_FILE`/… variables), and
//! its connection pacing from [`CONNECTIONS_PER_SECOND_VAR`] and [`MAX_SESSIONS_VAR`].

use std::sync::Arc;

use netauto_core::{ConfigError, NetworkClient};
use netauto_ssh::{PacingConfig, SshClientConfig, SshNetworkClient};

/// Most new SSH connections started per second over all devices: a positive number, or
/// `unlimited` (also `0`). Default 50 ([`PacingConfig::default`]), which spreads the logins of
/// a 10,000-device bulk over 200 s; raise it when the devices and their AAA servers can take
/// more.
pub const CONNECTIONS_PER_SECOND_VAR: &str = "NETAUTO_SSH_CONNECTIONS_PER_SECOND";
/// Most SSH sessions open at once over all devices (1–100000). Default 200.
pub const MAX_SESSIONS_VAR: &str = "NETAUTO_SSH_MAX_SESSIONS";

/// The SSH client configured from the environment.
pub fn from_env() -> Result<Arc<dyn NetworkClient>, ConfigError> {
    let config = SshClientConfig {
        pacing: pacing_from(|var| std::env::var(var).ok())?,
        ..SshClientConfig::default()
    };
    Ok(Arc::new(SshNetworkClient::new(config)))
}

/// The pacing from the variables `get` answers (unset ones keep their default).
fn pacing_from(get: impl Fn(&str) -> Option<String>) -> Result<PacingConfig, ConfigError> {
    let mut pacing = PacingConfig::default();
    if let Some(v) = get(CONNECTIONS_PER_SECOND_VAR) {
        let bad = |reason: &str| ConfigError {
            var: CONNECTIONS_PER_SECOND_VAR,
            value: v.clone(),
            reason: reason.to_owned(),
        };
        pacing.connections_per_second = match v.trim() {
            "unlimited" | "0" => None,
            s => match s.parse::<f64>() {
                Ok(rate) if rate.is_finite() && rate > 0.0 => Some(rate),
                _ => {
                    return Err(bad(
                        "not a positive number of connections per second, nor `unlimited`",
                    ));
                }
            },
        };
    }
    if let Some(v) = get(MAX_SESSIONS_VAR) {
        pacing.max_sessions = match v.trim().parse::<usize>() {
            Ok(n @ 1..=100_000) => n,
            _ => {
                return Err(ConfigError {
                    var: MAX_SESSIONS_VAR,
                    value: v,
                    reason: "not a number of sessions from 1 to 100000".to_owned(),
                });
            }
        };
    }
    Ok(pacing)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pacing(vars: &[(&str, &str)]) -> Result<PacingConfig, ConfigError> {
        pacing_from(|var| {
            vars.iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn unset_variables_keep_the_defaults() {
        assert_eq!(pacing(&[]).unwrap(), PacingConfig::default());
    }

    #[test]
    fn rate_and_sessions_are_read() {
        let p = pacing(&[
            (CONNECTIONS_PER_SECOND_VAR, " 400 "),
            (MAX_SESSIONS_VAR, "500"),
        ])
        .unwrap();
        assert_eq!(
            (p.connections_per_second, p.max_sessions),
            (Some(400.0), 500)
        );
        for unlimited in ["unlimited", "0"] {
            let p = pacing(&[(CONNECTIONS_PER_SECOND_VAR, unlimited)]).unwrap();
            assert_eq!(p.connections_per_second, None);
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            (CONNECTIONS_PER_SECOND_VAR, "-1"),
            (CONNECTIONS_PER_SECOND_VAR, "fast"),
            (CONNECTIONS_PER_SECOND_VAR, "NaN"),
            (MAX_SESSIONS_VAR, "0"),
            (MAX_SESSIONS_VAR, "many"),
        ] {
            let e = pacing(&[(var, value)]).unwrap_err();
            assert_eq!((e.var, e.value.as_str()), (var, value));
        }
    }
}
