//! Mapping russh errors to [`NetworkError`].

use netauto_core::NetworkError;

use crate::config::LEGACY_TAG;

/// An error while connecting (TCP, key exchange): negotiation failures list both sides'
/// offers, I/O failures are `Connect` (retryable).
pub(crate) fn map_connect_error(addr: &str, e: russh::Error, legacy: bool) -> NetworkError {
    match e {
        russh::Error::NoCommonAlgo { kind, ours, theirs } => {
            let hint = if legacy {
                String::new()
            } else {
                format!(
                    "; if this is an old device, allow legacy algorithms for it (tag it \
                     {LEGACY_TAG:?} or list it in SshClientConfig::legacy_devices)"
                )
            };
            NetworkError::Protocol(format!(
                "no common {} algorithm with {addr}: we offered [{}], the device offered [{}]{hint}",
                format!("{kind:?}").to_ascii_lowercase(),
                ours.join(", "),
                theirs.join(", "),
            ))
        }
        russh::Error::IO(io) => NetworkError::Connect {
            host: addr.to_owned(),
            message: io.to_string(),
        },
        russh::Error::Disconnect | russh::Error::HUP | russh::Error::SendError => {
            NetworkError::Connect {
                host: addr.to_owned(),
                message: "connection closed during the SSH handshake".to_owned(),
            }
        }
        other => NetworkError::Protocol(format!("SSH handshake with {addr} failed: {other}")),
    }
}

/// An error after the handshake (auth, channel requests).
pub(crate) fn map_session_error(addr: String, e: russh::Error) -> NetworkError {
    match e {
        russh::Error::IO(io) => NetworkError::Closed(format!("{addr}: {io}")),
        russh::Error::Disconnect
        | russh::Error::HUP
        | russh::Error::SendError
        | russh::Error::RecvError => NetworkError::Closed(format!("{addr} closed the connection")),
        russh::Error::ChannelOpenFailure(reason) => {
            NetworkError::Closed(format!("{addr} refused a session channel: {reason:?}"))
        }
        other => NetworkError::Protocol(format!("{addr}: {other}")),
    }
}
