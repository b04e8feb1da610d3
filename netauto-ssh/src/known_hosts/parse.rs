//! One line of a known_hosts file, read as OpenSSH's `hostfile.c` reads it.
//!
//! The fields are split here, as OpenSSH splits them; each field is then parsed by the parser
//! `ssh-key`'s `known_hosts` module has for it: [`Marker`] for the marker, [`HostPatterns`]
//! for a hashed `|1|salt|hash` name, and [`PublicKey::from_openssh`] for the key (what
//! `ssh-key`'s `Entry` uses for its key). `ssh-key`'s line parser (`Entry::from_str`, and the
//! `KnownHosts` iterator built on it) is not used for the line itself, since it reads lines
//! differently than OpenSSH and than this crate did:
//!
//! * it splits fields on single spaces and does not skip leading blanks, where OpenSSH splits
//!   on runs of spaces and tabs (a tab-separated or indented line would not parse);
//! * it cuts a line at the first `#` anywhere, where OpenSSH only skips lines whose first
//!   field starts with `#`;
//! * a key that does not parse makes the whole line an error, names included, whereas a host
//!   named on such a line must be refused as unverifiable (accept-new would otherwise append
//!   another key for it at every login); and its errors carry no line number.
//!
//! Names are read as russh read them: a comma-separated list in which any name may be hashed
//! (`host,|1|salt|hash` names `host` and the hashed host). `ssh-key`'s [`HostPatterns`] (like
//! OpenSSH) reads a first field starting with `|1|` as one hashed name and any other as
//! patterns, so it parses each `|1|` name here, not the whole field. Two stricter readings
//! come with `ssh-key`, both as OpenSSH reads these lines: a hashed name with anything after
//! its hash (`|1|salt|hash|junk`) is malformed (it used to match), and the key type field must
//! name the type of the key (a line where it does not is a key that does not parse; it used to
//! be ignored).

use russh::keys::PublicKey;
use russh::keys::ssh_key::known_hosts::{HostPatterns, Marker};

/// What a line of the file says.
pub(super) enum Line<'a> {
    /// Nothing: a blank line or a comment.
    Blank,
    /// Nothing, being malformed (OpenSSH skips it too): why.
    Skipped(String),
    /// Trusts a key for the hosts named in `names` (the comma-separated first field).
    Host {
        /// The names field, read by [`names`].
        names: &'a str,
        /// The key, or why it does not parse.
        key: Result<PublicKey, String>,
    },
    /// `@revoked`: the key (or why it does not parse) is refused for every host.
    Revoked(Result<PublicKey, String>),
    /// `@cert-authority`: names no host (certificates are not supported).
    CertAuthority,
}

/// One name of the names field.
pub(super) enum Name<'a> {
    /// `host`, `[host]:port` or anything else not hashed (patterns included): compared
    /// literally.
    Plain(&'a str),
    /// `|1|salt|hash`: the HMAC-SHA1 of the host name keyed with `salt` is `hash`.
    Hashed {
        /// The decoded salt.
        salt: Vec<u8>,
        /// The decoded HMAC.
        hash: [u8; 20],
    },
    /// A `|1|` name that does not decode: it matches nothing (and is not compared literally).
    Malformed,
}

/// The fields of a known_hosts line as OpenSSH's `hostfile.c` splits them: separated by runs
/// of spaces and tabs (leading ones skipped), the line ending (`\n` or `\r\n`) part of none.
pub(super) fn fields(line: &str) -> impl Iterator<Item = &str> {
    line.trim_end_matches(['\n', '\r'])
        .split([' ', '\t'])
        .filter(|f| !f.is_empty())
}

/// Reads one line (its line ending included or not): a first field starting with `#` makes a
/// comment; `@revoked` and `@cert-authority` markers come before the other fields (any other
/// `@` marker voids the line); then the comma-separated names, the key type and the base64
/// key (anything after it is a comment). A line without a key field is skipped.
pub(super) fn line(line: &str) -> Line<'_> {
    let mut fields = fields(line);
    let Some(head) = fields.next() else {
        return Line::Blank;
    };
    if head.starts_with('#') {
        return Line::Blank;
    }
    let (marker, names) = if head.starts_with('@') {
        match head.parse::<Marker>() {
            Ok(marker) => (Some(marker), fields.next()),
            Err(_) => return Line::Skipped(format!("unknown marker {head}")),
        }
    } else {
        (None, Some(head))
    };
    let (Some(names), Some(algorithm), Some(key)) = (names, fields.next(), fields.next()) else {
        return Line::Skipped("no key field (names, key type and key expected)".to_owned());
    };
    match marker {
        None => Line::Host {
            names,
            key: public_key(algorithm, key),
        },
        Some(Marker::Revoked) => Line::Revoked(public_key(algorithm, key)),
        Some(Marker::CertAuthority) => Line::CertAuthority,
    }
}

/// The names of a names field, in order.
pub(super) fn names(field: &str) -> impl Iterator<Item = Name<'_>> {
    field.split(',').map(|name| {
        if !name.starts_with("|1|") {
            return Name::Plain(name);
        }
        match name.parse::<HostPatterns>() {
            Ok(HostPatterns::HashedName { salt, hash }) => Name::Hashed { salt, hash },
            _ => Name::Malformed,
        }
    })
}

/// The key of the `<type> <base64>` fields, without a comment (a recorded key compares equal
/// to the key a device presents).
fn public_key(algorithm: &str, base64: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(&format!("{algorithm} {base64}"))
        .map_err(|e| format!("{algorithm} key: {e}"))
}
