//! Database URLs with their passwords hidden, for error messages and logs.

/// A database URL with its passwords replaced by `***`, for error messages and logs.
///
/// Hidden: the password of the user info (`postgres://ann:***@db/x`), and the value of
/// every `password` or `sslpassword` parameter, whatever its case or percent-encoding, in
/// the query string (`?user=ann&password=***`) or in a libpq keyword/value string
/// (`host=db password=***`, a quoted value whole). A query value is hidden up to the next
/// `&`; a URL too malformed to tell where its user info ends (a `?`, `/` or `@` in the
/// password, not percent-encoded) loses more than its password, never less.
pub fn redact(url: &str) -> String {
    redact_userinfo(&redact_parameters(url))
}

/// The names of the parameters whose value is a secret (compared ignoring ASCII case).
const SECRET_PARAMETERS: [&str; 2] = ["password", "sslpassword"];

/// `url` with the value of every secret parameter replaced by `***`.
fn redact_parameters(url: &str) -> String {
    let bytes = url.as_bytes();
    let mut out = String::with_capacity(url.len());
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        // A name starts the text, or follows a query separator or a blank (all ASCII, so
        // `at` is a character boundary).
        let query = at > 0 && matches!(bytes[at - 1], b'?' | b'&' | b';');
        let keyword = at == 0 || bytes[at - 1].is_ascii_whitespace();
        if (query || keyword)
            && let Some((from, to)) = secret_value(url, at, query)
        {
            out.push_str(&url[copied..from]);
            out.push_str("***");
            copied = to;
            at = to.max(at + 1);
            continue;
        }
        at += 1;
    }
    out.push_str(&url[copied..]);
    out
}

/// Where the value of the parameter whose name starts at `at` lies, if it is a secret one: a
/// query value runs to the next `&`; a keyword value (`name = value`) is a quoted string or
/// runs to the next blank.
fn secret_value(url: &str, at: usize, query: bool) -> Option<(usize, usize)> {
    let bytes = url.as_bytes();
    let ends_name =
        |b: u8| matches!(b, b'=' | b'&' | b';' | b'?' | b'#') || b.is_ascii_whitespace();
    let name_end = (at..bytes.len())
        .find(|&i| ends_name(bytes[i]))
        .unwrap_or(bytes.len());
    let name = percent_decoded(&url[at..name_end]);
    if !SECRET_PARAMETERS
        .iter()
        .any(|secret| name.eq_ignore_ascii_case(secret.as_bytes()))
    {
        return None;
    }
    let skip_blanks = |mut i: usize| {
        while !query && i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let equals = skip_blanks(name_end);
    if bytes.get(equals) != Some(&b'=') {
        return None;
    }
    let from = skip_blanks(equals + 1);
    let to = if query {
        url[from..].find('&').map_or(url.len(), |i| from + i)
    } else if bytes.get(from) == Some(&b'\'') {
        // A quoted value: to the closing quote; a backslash escapes the next character.
        let mut i = from + 1;
        loop {
            match bytes.get(i) {
                None => break bytes.len(),
                Some(b'\\') => i += 2,
                Some(b'\'') => break i + 1,
                Some(_) => i += 1,
            }
        }
        .min(bytes.len())
    } else {
        (from..bytes.len())
            .find(|&i| bytes[i].is_ascii_whitespace())
            .unwrap_or(bytes.len())
    };
    Some((from, to))
}

/// `text` with its `%XX` escapes decoded (others left as they are).
fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// `url` with the password of its user info (`scheme://user:password@host`) replaced by
/// `***`. The user info ends at the last `@` before the query; with no `@` there, a `?`
/// may be part of the password, so the last `@` of the URL ends it unless the text before
/// the `?` already has a path (`/`).
fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let start = scheme_end + 3;
    let rest = &url[start..];
    let before_query = &rest[..rest.find('?').unwrap_or(rest.len())];
    let at = match before_query.rfind('@') {
        Some(at) => Some(at),
        None if !before_query.contains('/') => rest.rfind('@'),
        None => None,
    };
    match at.and_then(|at| Some((at, rest[..at].find(':')?))) {
        Some((at, colon)) => format!("{}{}:***{}", &url[..start], &rest[..colon], &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://ann:s3cret@db:5432/x"),
            "postgres://ann:***@db:5432/x"
        );
        assert_eq!(redact("postgres://ann@db/x"), "postgres://ann@db/x");
        assert_eq!(redact("sqlite://netauto.db"), "sqlite://netauto.db");
    }

    #[test]
    fn passwords_in_the_query_string_are_redacted() {
        assert_eq!(
            redact("postgres://db/x?user=ann&password=s3cret"),
            "postgres://db/x?user=ann&password=***"
        );
        assert_eq!(
            redact("postgres://db/x?password=s3cret&sslmode=require"),
            "postgres://db/x?password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgres://db/x?sslmode=verify-full&sslpassword=k3y&user=ann"),
            "postgres://db/x?sslmode=verify-full&sslpassword=***&user=ann"
        );
        // Any case, percent-encoded names, several of them, empty values.
        assert_eq!(
            redact("postgresql://db/x?PassWord=a&SSLPASSWORD=b&pass%77ord=c&password="),
            "postgresql://db/x?PassWord=***&SSLPASSWORD=***&pass%77ord=***&password=***"
        );
        // Both places at once; an `@` in a query value is not the end of the user info.
        assert_eq!(
            redact("postgres://ann:s3cret@db:5432/x?options=a@b&password=p@ss"),
            "postgres://ann:***@db:5432/x?options=a@b&password=***"
        );
        assert_eq!(
            redact("postgres://db:5432/x?user=ann@corp&password=s3cret"),
            "postgres://db:5432/x?user=ann@corp&password=***"
        );
        // Names that only end or start like one are left alone.
        assert_eq!(
            redact("postgres://db/x?mypassword=1&password_file=2&passwordx=3"),
            "postgres://db/x?mypassword=1&password_file=2&passwordx=3"
        );
        // libpq keyword/value strings too, quoted values whole.
        assert_eq!(
            redact("host=db user=ann password=s3cret dbname=x"),
            "host=db user=ann password=*** dbname=x"
        );
        assert_eq!(
            redact("host=db password = 'a b\\' c' sslpassword=k"),
            "host=db password = *** sslpassword=***"
        );
    }

    #[test]
    fn no_part_of_a_password_survives_a_malformed_url() {
        // Each password is `qq`, a character a URL would need percent-encoded, then `zz`.
        for url in [
            "postgres://ann:qq/zz@db/x",
            "postgres://ann:qq?zz@db/x",
            "postgres://ann:qq@zz@db/x",
            "postgres://ann:qq#zz@db/x",
            "postgres://ann:qq:zz@db/x",
            "postgres://db/x?password=qq zz",
            "postgres://db/x?password=qq#zz",
            "postgres://db/x?password=qq?zz",
            "postgres://db/x?password=qq;zz",
            "postgres://db/x?password=qq=zz",
            "host=db password='qq\\'zz'",
        ] {
            let shown = redact(url);
            assert!(
                !shown.contains("qq") && !shown.contains("zz"),
                "{url} -> {shown}"
            );
        }
    }
}
