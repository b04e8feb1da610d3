//! Device inventories: CSV, YAML and JSON (including the file the simulator's `sim_farm`
//! example writes), parsed in full and validated before anything is written, with the line of
//! every bad row.
//!
//! [`parse`] answers either every device of the file, each with its [`Place`], or every
//! problem, each as a [`RowError`] naming its place: never a part. Values are trimmed; names
//! and hosts have no whitespace; no value has a control character or more than
//! [`MAX_FIELD_BYTES`]; files over [`MAX_INVENTORY_BYTES`] are refused before parsing.
//!
//! ```
//! use netauto_cli::inventory::{Format, Place, parse};
//!
//! let rows = parse("name,host,platform,username\nr1,10.0.0.1,linux,root\n", Format::Csv)
//!     .expect("valid");
//! assert_eq!(rows[0].place, Place::Line(2));
//! assert_eq!(rows[0].device.port, 22);
//!
//! let errors = parse("- {name: r1, host: h, platform: junos}\n", Format::Yaml).unwrap_err();
//! assert_eq!(errors[0].to_string(), "line 1: missing field `username`");
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use netauto_core::NewDevice;
use netauto_core::platform::Platforms;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The largest inventory [`parse`] reads, in bytes (64 MiB: some 300,000 devices).
pub const MAX_INVENTORY_BYTES: usize = 64 << 20;

/// The longest value of one field (a name, a host, a tag, …), in bytes.
pub const MAX_FIELD_BYTES: usize = 1024;

/// The file formats an inventory can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated, with a header line.
    Csv,
    /// A YAML list of devices, or a mapping with a `devices` list.
    Yaml,
    /// A JSON array of devices, or an object with a `devices` array (`sim_farm`'s output).
    Json,
}

impl Format {
    /// The format a file name suggests.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Self::Csv),
            "yaml" | "yml" => Some(Self::Yaml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Where a row is in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A line number (1-based).
    Line(u64),
    /// The n-th entry (1-based), when the line is unknown.
    Entry(usize),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) => write!(f, "line {n}"),
            Self::Entry(n) => write!(f, "entry {n}"),
        }
    }
}

/// A problem with one row (or with the whole file, at its place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Where.
    pub place: Place,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// A parsed, validated row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Where it came from.
    pub place: Place,
    /// The device.
    pub device: NewDevice,
}

/// One device as written in YAML or JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    host: String,
    #[serde(default)]
    port: Option<u16>,
    platform: String,
    username: String,
    #[serde(default)]
    credential_ref: Option<String>,
    #[serde(default)]
    tags: Option<Tags>,
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    jump_host: Option<String>,
    /// Variables of command templates (`{{ vars.NAME }}`).
    #[serde(default)]
    vars: BTreeMap<String, Scalar>,
    /// Written by the simulator; informational only.
    #[serde(default)]
    #[allow(dead_code)]
    host_key_fingerprint: Option<String>,
}

/// A variable's value as written: text, a number or a boolean (kept as text).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Self::Text(t) => t,
            Self::Int(n) => n.to_string(),
            Self::Float(x) => x.to_string(),
            Self::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Tags {
    List(Vec<String>),
    Text(String),
}

impl Tags {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::List(v) => v,
            Self::Text(s) => split_tags(&s),
        }
    }
}

fn split_tags(s: &str) -> Vec<String> {
    s.split([';', ',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses and validates a whole inventory. Answers every row, or every problem (each with
/// its line), never a part.
pub fn parse(text: &str, format: Format) -> Result<Vec<Row>, Vec<RowError>> {
    if text.len() > MAX_INVENTORY_BYTES {
        return Err(vec![RowError {
            place: Place::Line(1),
            message: format!(
                "the inventory is larger than {} MiB ({} bytes); split it",
                MAX_INVENTORY_BYTES >> 20,
                text.len()
            ),
        }]);
    }
    // Editors on Windows start UTF-8 files with a byte order mark; it is on no line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let raw = match format {
        Format::Csv => parse_csv(text),
        Format::Yaml => parse_yaml(text),
        Format::Json => parse_json(text),
    }?;
    let mut rows = Vec::with_capacity(raw.len());
    let mut errors = Vec::new();
    let mut seen: HashMap<String, Place> = HashMap::new();
    for (place, entry) in raw {
        let entry = match entry {
            Ok(entry) => entry,
            Err(message) => {
                errors.push(RowError { place, message });
                continue;
            }
        };
        // Names count even on rows with another problem, so that one run reports every
        // duplicate, not only those left once the other rows are fixed.
        let duplicate =
            word("device name", &entry.name)
                .ok()
                .and_then(|name| match seen.get(name) {
                    Some(first) => Some(format!(
                        "duplicate device name {} (first on {first})",
                        shown(name)
                    )),
                    None => {
                        seen.insert(name.to_owned(), place);
                        None
                    }
                });
        match (validate(entry), duplicate) {
            (Ok(device), None) => rows.push(Row { place, device }),
            (Ok(_), Some(message)) | (Err(message), None) => {
                errors.push(RowError { place, message });
            }
            (Err(problem), Some(duplicate)) => errors.push(RowError {
                place,
                message: format!("{problem}; {duplicate}"),
            }),
        }
    }
    if rows.is_empty() && errors.is_empty() {
        errors.push(RowError {
            place: Place::Line(1),
            message: "the inventory lists no devices".to_owned(),
        });
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

type RawRows = Vec<(Place, Result<Entry, String>)>;

/// Checks one device given field by field (`netauto devices add`) exactly as [`parse`]
/// checks each row of an inventory: the same limits, names and hosts without whitespace, no
/// control character, a port from 1. Answers the device with its values trimmed (blank
/// optional values and tags dropped), or the problem, naming the field.
///
/// ```
/// use netauto_cli::inventory::validate_device;
/// use netauto_core::NewDevice;
///
/// let device = validate_device(NewDevice::new(" r1 ", "10.0.0.1", "linux", "root")).unwrap();
/// assert_eq!(device.name, "r1");
/// let error = validate_device(NewDevice::new("r1", "10.0.0.1", "linux\x1b[2J", "root"));
/// assert_eq!(error.unwrap_err(), r#"platform "linux\u{1b}[2J" has a control character"#);
/// ```
pub fn validate_device(device: NewDevice) -> Result<NewDevice, String> {
    // Every field, so that a field added to `NewDevice` is not let through unchecked.
    let NewDevice {
        name,
        host,
        port,
        platform,
        username,
        credential_ref,
        tags,
        site,
        jump_host,
        vars,
    } = device;
    validate(Entry {
        name,
        host,
        port: Some(port),
        platform,
        username,
        credential_ref,
        tags: Some(Tags::List(tags)),
        site,
        jump_host,
        vars: vars
            .into_iter()
            .map(|(k, v)| (k, Scalar::Text(v)))
            .collect(),
        host_key_fingerprint: None,
    })
}

fn validate(e: Entry) -> Result<NewDevice, String> {
    let name = word("device name", &e.name)?;
    let host = word("host", &e.host)?;
    let port = e.port.unwrap_or(22);
    if port == 0 {
        return Err("port must be 1 to 65535".to_owned());
    }
    let platform = text("platform", &e.platform)?.ok_or("platform is empty")?;
    let username = text("username", &e.username)?.ok_or("username is empty")?;
    let mut device = NewDevice::new(name, host, platform, username).with_port(port);
    let credential_ref = e.credential_ref.as_deref();
    if let Some(c) = credential_ref.map_or(Ok(None), |c| text("credential_ref", c))? {
        device = device.with_credential_ref(c);
    }
    if let Some(tags) = e.tags {
        let mut out = Vec::new();
        for t in tags.into_vec() {
            out.extend(text("tag", &t)?.map(str::to_owned));
        }
        device = device.with_tags(out);
    }
    if let Some(site) = e.site.as_deref().map_or(Ok(None), |s| text("site", s))? {
        device = device.with_site(site);
    }
    if let Some(jump) = e
        .jump_host
        .as_deref()
        .map_or(Ok(None), |j| text("jump_host", j))?
    {
        device = device.with_jump_host(jump);
    }
    for (name, value) in e.vars {
        if !valid_var_name(&name) {
            return Err(format!(
                "variable name {} must be letters, digits and '_', not starting with a digit",
                shown(&name)
            ));
        }
        let value = value.into_text();
        let value = text(&format!("variable {name}"), &value)?.unwrap_or_default();
        device = device.with_var(name, value);
    }
    Ok(device)
}

/// Checks that every row names a known platform (a name or an alias of `platforms`):
/// one error per row that does not, naming its place. The known names are in
/// [`unknown_platforms_hint`].
///
/// ```
/// use netauto_cli::inventory::{Format, check_platforms, parse};
/// use netauto_core::platform::Platforms;
///
/// let rows = parse("name,host,platform,username\nr1,h1,ios,u\nr2,h2,cisco_io,u\n", Format::Csv).unwrap();
/// let errors = check_platforms(&rows, &Platforms::builtin()).unwrap_err();
/// assert_eq!(errors.len(), 1);
/// assert_eq!(errors[0].to_string(), r#"line 3: unknown platform "cisco_io""#);
/// ```
pub fn check_platforms(rows: &[Row], platforms: &Platforms) -> Result<(), Vec<RowError>> {
    let errors: Vec<RowError> = rows
        .iter()
        .filter(|r| platforms.get(&r.device.platform).is_none())
        .map(|r| RowError {
            place: r.place,
            message: format!("unknown platform {}", shown(&r.device.platform)),
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The sentence listing the known platforms, for errors about unknown ones.
pub fn unknown_platforms_hint(platforms: &Platforms) -> String {
    let names: Vec<&str> = platforms.iter().map(|p| p.name.as_str()).collect();
    format!(
        "known platforms: {} (`netauto platforms list` shows their aliases; add your own in NETAUTO_PLATFORMS_DIR)",
        names.join(", ")
    )
}

/// A template variable name: usable as `{{ vars.NAME }}`.
fn valid_var_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A trimmed value: `None` if blank; an error if too long or with a control character (which
/// PostgreSQL refuses, or which would garble `devices list`).
fn text<'a>(what: &str, value: &'a str) -> Result<Option<&'a str>, String> {
    let v = value.trim();
    if v.len() > MAX_FIELD_BYTES {
        return Err(format!(
            "{what} is too long ({} bytes, at most {MAX_FIELD_BYTES})",
            v.len()
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(format!("{what} {} has a control character", shown(v)));
    }
    Ok((!v.is_empty()).then_some(v))
}

/// A trimmed, non-empty value without whitespace: a device name or a host.
fn word<'a>(what: &str, value: &'a str) -> Result<&'a str, String> {
    match text(what, value)? {
        Some(v) if !v.chars().any(char::is_whitespace) => Ok(v),
        _ => Err(format!(
            "bad {what} {} (empty or with spaces)",
            shown(value)
        )),
    }
}

/// A value for an error message: quoted, escaped, and cut after 40 characters.
fn shown(value: &str) -> String {
    const MAX: usize = 40;
    match value.char_indices().nth(MAX) {
        None => format!("{value:?}"),
        Some((i, _)) => format!("{:?}… ({} bytes)", &value[..i], value.len()),
    }
}

/// The columns a CSV inventory may name in its header (`name`, `host`, `platform` and
/// `username` are required).
pub const CSV_COLUMNS: [&str; 9] = [
    "name",
    "host",
    "port",
    "platform",
    "username",
    "credential_ref",
    "tags",
    "site",
    "jump_host",
];

fn parse_csv(text: &str) -> Result<RawRows, Vec<RowError>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .flexible(false)
        .from_reader(text.as_bytes());
    let lines = Lines::new(text);
    // The header's line: after any blank or comment lines.
    let header_line = lines.line(csv_record_start(text, 0));
    let header_error = |message: String| {
        vec![RowError {
            place: Place::Line(header_line),
            message,
        }]
    };
    let headers = reader
        .headers()
        .map_err(|e| header_error(format!("cannot read the header: {e}")))?
        .clone();
    let mut index = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let h = h.to_ascii_lowercase();
        if !CSV_COLUMNS.contains(&h.as_str()) && !h.starts_with("vars.") {
            return Err(header_error(format!(
                "unknown column {} (columns: {}, and vars.NAME for template variables)",
                shown(&h),
                CSV_COLUMNS.join(", ")
            )));
        }
        if index.insert(h.clone(), i).is_some() {
            return Err(header_error(format!("column {} appears twice", shown(&h))));
        }
    }
    for required in ["name", "host", "platform", "username"] {
        if !index.contains_key(required) {
            return Err(header_error(format!("missing column {required:?}")));
        }
    }
    // The csv crate's positions are where the previous record ended: before the blank and
    // comment lines ahead of this one, and before the `\n` of a `\r\n`.
    let place = |pos: Option<&csv::Position>| {
        let start = pos.map_or(text.len(), |p| {
            csv_record_start(text, usize::try_from(p.byte()).unwrap_or(usize::MAX))
        });
        Place::Line(lines.line(start))
    };
    let mut out = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                out.push((place(e.position()), Err(csv_error_message(&e))));
                continue;
            }
        };
        let line = place(record.position());
        let field = |name: &str| {
            index
                .get(name)
                .and_then(|i| record.get(*i))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let port = match field("port") {
            None => Ok(None),
            Some(p) => p
                .parse::<u16>()
                .map(Some)
                .map_err(|_| format!("port {} is not a number from 1 to 65535", shown(&p))),
        };
        let entry = port.map(|port| Entry {
            name: field("name").unwrap_or_default(),
            host: field("host").unwrap_or_default(),
            port,
            platform: field("platform").unwrap_or_default(),
            username: field("username").unwrap_or_default(),
            credential_ref: field("credential_ref"),
            tags: field("tags").map(Tags::Text),
            site: field("site"),
            jump_host: field("jump_host"),
            vars: index
                .keys()
                .filter_map(|h| h.strip_prefix("vars."))
                .filter_map(|name| {
                    field(&format!("vars.{name}")).map(|v| (name.to_owned(), Scalar::Text(v)))
                })
                .collect(),
            host_key_fingerprint: None,
        });
        out.push((line, entry));
    }
    Ok(out)
}

/// Where the record the csv reader starts reading at byte `at` really starts: past line
/// breaks (blank lines) and `#` comment lines, as the reader skips them.
fn csv_record_start(text: &str, mut at: usize) -> usize {
    let bytes = text.as_bytes();
    while let Some(&b) = bytes.get(at) {
        match b {
            b'\r' | b'\n' => at += 1,
            b'#' => {
                at += bytes[at..]
                    .iter()
                    .position(|b| matches!(b, b'\r' | b'\n'))
                    .unwrap_or(bytes.len() - at);
            }
            _ => break,
        }
    }
    at.min(bytes.len())
}

fn csv_error_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
        _ => e.to_string(),
    }
}

fn parse_json(text: &str) -> Result<RawRows, Vec<RowError>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapped<'a> {
        #[serde(borrow)]
        devices: Vec<&'a RawValue>,
    }
    let lines = Lines::new(text);
    let syntax = |e: serde_json::Error| {
        vec![RowError {
            place: Place::Line(lines.clamp(e.line() as u64)),
            message: format!("not a JSON inventory: {}", cut(&e.to_string())),
        }]
    };
    let items: Vec<&RawValue> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(syntax)?
    } else {
        serde_json::from_str::<Wrapped<'_>>(text)
            .map_err(syntax)?
            .devices
    };
    Ok(items
        .into_iter()
        .map(|raw| {
            let offset = (raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
            let line = lines.line(offset);
            let entry = serde_json::from_str::<Entry>(raw.get()).map_err(|e| entry_message(&e));
            (Place::Line(line), entry)
        })
        .collect())
}

fn parse_yaml(text: &str) -> Result<RawRows, Vec<RowError>> {
    // libyaml refuses these with a position but no line: find the line here.
    if let Some((offset, c)) = text.char_indices().find(|(_, c)| !yaml_printable(*c)) {
        return Err(vec![RowError {
            place: Place::Line(Lines::new(text).line(offset)),
            message: format!(
                "not a YAML inventory: the character U+{0:04X} is not allowed in YAML \
                 (write it as \\u{0:04X} in double quotes)",
                u32::from(c)
            ),
        }]);
    }
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map_or(1, |l| l.line() as u64);
        vec![RowError {
            // libyaml puts an error at the end of a file without a final line break on the
            // line after it.
            place: Place::Line(Lines::new(text).clamp(line)),
            message: format!("not a YAML inventory: {}", cut(&e.to_string())),
        }]
    })?;
    let items = match value {
        serde_yaml::Value::Sequence(items) => items,
        serde_yaml::Value::Mapping(mut m) => match m.remove("devices") {
            // Other keys are typos or settings this importer would ignore; they would also
            // hide the lines of the devices (see `yaml_item_lines`).
            Some(serde_yaml::Value::Sequence(_)) if !m.is_empty() => {
                let keys: Vec<String> = m
                    .keys()
                    .map(|k| match k {
                        serde_yaml::Value::String(k) => shown(k),
                        other => cut(&format!("{other:?}")),
                    })
                    .collect();
                return Err(vec![RowError {
                    place: Place::Line(1),
                    message: format!(
                        "unknown top-level {} {} (only `devices:` is read)",
                        if keys.len() == 1 { "key" } else { "keys" },
                        keys.join(", ")
                    ),
                }]);
            }
            Some(serde_yaml::Value::Sequence(items)) => items,
            _ => {
                return Err(vec![RowError {
                    place: Place::Line(1),
                    message: "expected a list of devices or a `devices:` list".to_owned(),
                }]);
            }
        },
        _ => {
            return Err(vec![RowError {
                place: Place::Line(1),
                message: "expected a list of devices or a `devices:` list".to_owned(),
            }]);
        }
    };
    let lines = yaml_item_lines(text);
    let lines = (lines.len() == items.len()).then_some(lines);
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let place = lines
                .as_ref()
                .map_or(Place::Entry(i + 1), |l| Place::Line(l[i]));
            let entry = serde_yaml::from_value::<Entry>(item).map_err(|e| {
                let message = entry_message(&e);
                if message.contains("expected a string") {
                    // `name: 0x10` is the number 16, `site: ~` is null.
                    format!("{message} (quote text that YAML reads as a number, boolean or null)")
                } else {
                    message
                }
            });
            (place, entry)
        })
        .collect())
}

/// Whether YAML allows `c` in a file (its `c-printable`).
fn yaml_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// The lines where the top-level list's items start: lines `- …` at the indentation of the
/// first such line. (Used only when their count matches the parsed list.)
fn yaml_item_lines(text: &str) -> Vec<u64> {
    let mut indent = None;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let stripped = line.trim_start_matches(' ');
        let is_item = stripped == "-" || stripped.starts_with("- ");
        if !is_item {
            continue;
        }
        let here = line.len() - stripped.len();
        match indent {
            None => {
                indent = Some(here);
                out.push(n as u64 + 1);
            }
            Some(i) if i == here => out.push(n as u64 + 1),
            Some(_) => {}
        }
    }
    out
}

/// A serde error about one entry, without the position inside the entry's own text.
fn entry_message(e: &impl fmt::Display) -> String {
    let text = e.to_string();
    cut(match text.find(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    })
}

/// A message that may quote a huge value, cut to a readable length.
fn cut(message: &str) -> String {
    const MAX: usize = 300;
    match message.char_indices().nth(MAX) {
        None => message.to_owned(),
        Some((i, _)) => format!("{}…", &message[..i]),
    }
}

/// Line numbers of byte offsets, in logarithmic time (a file's rows ask in turn).
struct Lines {
    /// The offset of every `\n`.
    breaks: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Self {
        Self {
            breaks: text
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        }
    }

    /// The 1-based line of the byte at `offset`.
    fn line(&self, offset: usize) -> u64 {
        self.breaks.partition_point(|b| *b < offset) as u64 + 1
    }

    /// `line`, but no later than the file's last line.
    fn clamp(&self, line: u64) -> u64 {
        line.clamp(1, self.breaks.len() as u64 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_variables_come_from_vars_columns_and_maps() {
        let csv = "name,host,platform,username,vars.uplink,vars.vlan\nr1,h,ios,u,Gi0/1,10\nr2,h,ios,u,,\n";
        let rows = parse(csv, Format::Csv).unwrap();
        assert_eq!(
            rows[0].device.vars.get("uplink").map(String::as_str),
            Some("Gi0/1")
        );
        assert_eq!(
            rows[0].device.vars.get("vlan").map(String::as_str),
            Some("10")
        );
        assert!(
            rows[1].device.vars.is_empty(),
            "empty cells are no variable"
        );
        let yaml = "- {name: r1, host: h, platform: ios, username: u, vars: {uplink: Gi0/1, vlan: 10, lab: true}}\n";
        let rows = parse(yaml, Format::Yaml).unwrap();
        assert_eq!(
            rows[0].device.vars.get("vlan").map(String::as_str),
            Some("10")
        );
        assert_eq!(
            rows[0].device.vars.get("lab").map(String::as_str),
            Some("true")
        );
        let bad = "- {name: r1, host: h, platform: ios, username: u, vars: {1up: x}}\n";
        let errors = parse(bad, Format::Yaml).unwrap_err();
        assert!(
            errors[0].message.contains("variable name \"1up\""),
            "{errors:?}"
        );
    }

    fn lines(errors: &[RowError]) -> Vec<Place> {
        errors.iter().map(|e| e.place).collect()
    }

    #[test]
    fn csv_rows_and_defaults() {
        let text = "name,host,port,platform,username,credential_ref,tags,site\n\
                    r1,10.0.0.1,,cisco_ios,admin,lab,core;edge,ams\n\
                    r2,10.0.0.2,2222,linux,root,,,\n";
        let rows = parse(text, Format::Csv).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].device.port, 22);
        assert_eq!(rows[0].device.tags, ["core", "edge"]);
        assert_eq!(rows[0].device.site.as_deref(), Some("ams"));
        assert_eq!(rows[1].device.port, 2222);
        assert_eq!(rows[1].device.credential_ref, None);
        assert_eq!(rows[1].place, Place::Line(3));
    }

    #[test]
    fn csv_bad_rows_have_their_lines() {
        let text = "name,host,port,platform,username\n\
                    r1,h1,22,linux,u\n\
                    r2,h2,abc,linux,u\n\
                    r1,h3,22,linux,u\n\
                    r4,h4,22,linux\n";
        let errors = parse(text, Format::Csv).unwrap_err();
        assert_eq!(
            lines(&errors),
            [Place::Line(3), Place::Line(4), Place::Line(5)]
        );
        assert!(errors[0].message.contains("\"abc\""), "{}", errors[0]);
        assert!(
            errors[1].message.contains("first on line 2"),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn yaml_lists_and_mappings() {
        let text = "devices:\n  - name: r1\n    host: h1\n    platform: junos\n    username: u\n    tags: [a, b]\n  - name: r2\n    host: h2\n    port: 0\n    platform: junos\n    username: u\n";
        let errors = parse(text, Format::Yaml).unwrap_err();
        assert_eq!(lines(&errors), [Place::Line(7)]);
        let errors = parse(
            "- {name: 0x10, host: h, platform: p, username: u}\n",
            Format::Yaml,
        )
        .unwrap_err();
        assert!(errors[0].message.contains("`16`") && errors[0].message.contains("quote"));
        let ok = "- {name: r1, host: h1, platform: junos, username: u}\n";
        assert_eq!(parse(ok, Format::Yaml).unwrap().len(), 1);
    }

    #[test]
    fn json_as_the_simulator_writes_it() {
        let text = r#"{
  "devices": [
    {
      "name": "core-sw-01",
      "host": "127.0.0.1",
      "port": 40001,
      "platform": "cisco_ios",
      "username": "netauto",
      "credential_ref": "sim:core-sw-01",
      "host_key_fingerprint": "SHA256:x",
      "tags": []
    },
    {
      "name": "leaf-01",
      "host": "127.0.0.1",
      "platform": "arista_eos",
      "usernme": "netauto"
    }
  ]
}"#;
        let errors = parse(text, Format::Json).unwrap_err();
        assert_eq!(lines(&errors), [Place::Line(13)]);
        assert!(errors[0].message.contains("usernme"), "{}", errors[0]);
    }

    // Regressions found by tests/inventory_fuzz.rs.

    #[test]
    fn csv_lines_count_crlf_blank_and_comment_lines() {
        // The csv crate places a record where the previous one ended: before the `\n` of a
        // `\r\n`, and before blank and comment lines.
        let text =
            "# exported\r\n\r\nname,host,platform,username\r\nr1,h,p,u\r\n\r\n# core\r\nr2,h,p\r\n";
        let errors = parse(text, Format::Csv).unwrap_err();
        assert_eq!(lines(&errors), [Place::Line(7)], "{errors:?}");
        let text = "name,host,platform,username\r\nr1,h,p,u\r\n\n#x\nr2,h,p,u\n";
        let rows = parse(text, Format::Csv).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.place).collect::<Vec<_>>(),
            [Place::Line(2), Place::Line(5)]
        );
        let errors = parse("# inventory\n\nname,host,nope\n", Format::Csv).unwrap_err();
        assert_eq!(lines(&errors), [Place::Line(3)], "{errors:?}");
    }

    #[test]
    fn syntax_errors_at_the_end_name_the_last_line() {
        // libyaml puts them on the line after a file without a final line break.
        for (text, format) in [("[", Format::Yaml), ("{\n\"devices\": [", Format::Yaml)] {
            let errors = parse(text, format).unwrap_err();
            let last = text.lines().count() as u64;
            assert_eq!(lines(&errors), [Place::Line(last)], "{text:?}: {errors:?}");
        }
    }

    #[test]
    fn yaml_control_characters_are_reported_at_their_line() {
        // libyaml's message has a byte position and no line.
        let text = "- name: r1\n  host: h\n  platform: 'a\u{7}'\n  username: u\n";
        let errors = parse(text, Format::Yaml).unwrap_err();
        assert_eq!(lines(&errors), [Place::Line(3)], "{errors:?}");
        assert!(errors[0].message.contains("U+0007"), "{}", errors[0]);
        // Escaped, the character reaches validation, which refuses it for the row.
        let text = "- name: r1\n  host: h\n  platform: \"a\\a\"\n  username: u\n";
        let errors = parse(text, Format::Yaml).unwrap_err();
        assert_eq!(lines(&errors), [Place::Line(1)], "{errors:?}");
        assert!(
            errors[0].message.contains("control character"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn control_characters_and_huge_values_are_refused() {
        for (field, value) in [
            ("username", "ad\u{7}min".to_owned()),
            ("platform", "ios\u{0}".to_owned()),
            ("site", "a\u{1b}[31mb".to_owned()),
            ("credential_ref", "x".repeat(MAX_FIELD_BYTES + 1)),
            ("tags", "o\u{85}k".to_owned()),
        ] {
            let mut v =
                serde_json::json!({"name": "r1", "host": "h", "platform": "p", "username": "u"});
            v[field] = serde_json::Value::from(value.as_str());
            let text = serde_json::to_string(&serde_json::json!([v])).unwrap();
            let errors = parse(&text, Format::Json).unwrap_err();
            let message = &errors[0].message;
            assert!(
                message.starts_with(field.trim_end_matches('s')),
                "{message}"
            );
            assert!(message.len() < 200, "{message}");
        }
        // List tags are trimmed and blank ones dropped, as in the CSV form.
        let rows = parse(
            "- {name: r1, host: h, platform: p, username: u, tags: [' a ', '', b]}\n",
            Format::Yaml,
        )
        .unwrap();
        assert_eq!(rows[0].device.tags, ["a", "b"]);
    }

    #[test]
    fn json_rows_get_their_lines_in_linear_time() {
        // `line_of` counted from the top for every row: 50,000 rows took minutes.
        let n = 20_000;
        let mut text = String::from("[\n");
        for i in 0..n {
            let sep = if i == 0 { "" } else { "," };
            text.push_str(&format!(
                "{sep}{{\"name\": \"r{i}\", \"host\": \"h\", \"platform\": \"p\", \"username\": \"u\"}}\n"
            ));
        }
        text.push(']');
        let start = std::time::Instant::now();
        let rows = parse(&text, Format::Json).unwrap();
        assert_eq!(rows[n - 1].place, Place::Line(n as u64 + 1));
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_file() {
        let json = "\u{feff}[{\"name\": \"r1\", \"host\": \"h\", \"platform\": \"p\", \"username\": \"u\"}]";
        assert_eq!(parse(json, Format::Json).unwrap().len(), 1);
        let csv = "\u{feff}name,host,platform,username\nr1,h,p,u\n";
        assert_eq!(parse(csv, Format::Csv).unwrap()[0].place, Place::Line(2));
    }

    #[test]
    fn top_level_keys_besides_devices_are_errors() {
        // They were ignored, and a list in one made the rows' lines those of its items.
        let text = "groups:\n- core\ndevices:\n  - {name: r1, host: h, platform: p}\n";
        let errors = parse(text, Format::Yaml).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("\"groups\""), "{}", errors[0]);
        let text = "{\"devices\": [],\n \"defaults\": {\"port\": 2222}}";
        let errors = parse(text, Format::Json).unwrap_err();
        assert_eq!(lines(&errors), [Place::Line(2)], "{errors:?}");
        assert!(errors[0].message.contains("defaults"), "{}", errors[0]);
    }

    #[test]
    fn duplicates_of_rows_with_other_problems_are_reported_too() {
        let text = "name,host,port,platform,username\n\
                    r1,h,0,p,u\n\
                    r1,h,22,p,u\n\
                    r1,h,x,p,u\n";
        let errors = parse(text, Format::Csv).unwrap_err();
        assert_eq!(
            lines(&errors),
            [Place::Line(2), Place::Line(3), Place::Line(4)],
            "{errors:?}"
        );
        assert!(
            errors[1].message.contains("first on line 2"),
            "{}",
            errors[1]
        );
        let text = "- {name: r1, host: h, port: 0, platform: p, username: u}\n\
                    - {name: r1, host: h, platform: '', username: u}\n";
        let errors = parse(text, Format::Yaml).unwrap_err();
        assert_eq!(
            lines(&errors),
            [Place::Line(1), Place::Line(2)],
            "{errors:?}"
        );
        assert_eq!(
            errors[1].message,
            "platform is empty; duplicate device name \"r1\" (first on line 1)"
        );
    }

    #[test]
    fn empty_inventories_are_an_error() {
        assert!(parse("name,host,platform,username\n", Format::Csv).is_err());
        assert!(parse("[]", Format::Json).is_err());
    }
}

/// Why [`import`] wrote nothing.
#[derive(Debug)]
pub enum ImportError {
    /// Rows are wrong: what (e.g. `2 bad rows`) and each problem with its place; for
    /// unknown platforms the known ones are in `hint`.
    Rows {
        /// A summary: `2 bad rows`, `1 row names an unknown platform`, `3 devices are
        /// already in the database`.
        summary: String,
        /// `line 3: …` per problem.
        problems: Vec<String>,
        /// More help (the known platforms), or empty.
        hint: String,
    },
    /// The store failed (nothing was written: the import is one transaction).
    Store(netauto_core::Error),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rows {
                summary,
                problems,
                hint,
            } => {
                write!(f, "{summary}, nothing imported: {}", problems.join("; "))?;
                if !hint.is_empty() {
                    write!(f, "; {hint}")?;
                }
                Ok(())
            }
            Self::Store(e) => write!(f, "nothing imported: {e}"),
        }
    }
}

impl std::error::Error for ImportError {}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Imports an inventory all or nothing: parsed and checked in full ([`parse`], known
/// platforms, names not already in the store), then created in one transaction. Answers
/// how many devices were created. The CLI's `devices import` and the web app's import use it.
pub async fn import(
    store: &dyn netauto_core::RunStore,
    text: &str,
    format: Format,
    platforms: &Platforms,
) -> Result<usize, ImportError> {
    let to_strings = |errors: Vec<RowError>| errors.iter().map(ToString::to_string).collect();
    let rows = parse(text, format).map_err(|errors| ImportError::Rows {
        summary: plural(errors.len(), "bad row", "bad rows"),
        problems: to_strings(errors),
        hint: String::new(),
    })?;
    check_platforms(&rows, platforms).map_err(|errors| ImportError::Rows {
        summary: plural(
            errors.len(),
            "row names an unknown platform",
            "rows name an unknown platform",
        ),
        problems: to_strings(errors),
        hint: unknown_platforms_hint(platforms),
    })?;
    let existing: std::collections::HashSet<String> = store
        .list_devices()
        .await
        .map_err(ImportError::Store)?
        .into_iter()
        .map(|d| d.name)
        .collect();
    let clashes: Vec<String> = rows
        .iter()
        .filter(|r| existing.contains(&r.device.name))
        .map(|r| format!("{}: device {:?} already exists", r.place, r.device.name))
        .collect();
    if !clashes.is_empty() {
        return Err(ImportError::Rows {
            summary: plural(
                clashes.len(),
                "device is already in the database",
                "devices are already in the database",
            ),
            problems: clashes,
            hint: String::new(),
        });
    }
    let total = rows.len();
    store
        .create_devices(rows.into_iter().map(|r| r.device).collect())
        .await
        .map_err(ImportError::Store)?;
    Ok(total)
}

/// One device as `devices add` and the web app's form check it: the checks of an inventory
/// row ([`validate_device`]) and a known platform. The problem in a sentence, with the known
/// platforms when the platform is unknown.
pub fn check_device(device: NewDevice, platforms: &Platforms) -> Result<NewDevice, String> {
    let device = validate_device(device)?;
    if platforms.get(&device.platform).is_none() {
        return Err(format!(
            "unknown platform {:?}; {}",
            device.platform,
            unknown_platforms_hint(platforms)
        ));
    }
    Ok(device)
}
