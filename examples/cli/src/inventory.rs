//! Device inventories: CSV, YAML and JSON (including the file the simulator's `sim_farm`
//! example writes), parsed in full and validated before anything is written, with the line of
//! every bad row.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use netauto_core::NewDevice;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The file formats an inventory can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Comma-separated, with a header line.
    Csv,
    /// A YAML list of devices, or a mapping with a `devices` list.
    Yaml,
    /// A JSON array of devices, or an object with a `devices` array (`sim_farm`'s output).
    Json,
}

impl Format {
    /// The format a file name suggests.
    pub(crate) fn from_path(path: &Path) -> Option<Self> {
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
pub(crate) enum Place {
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
pub(crate) struct RowError {
    /// Where.
    pub(crate) place: Place,
    /// What is wrong.
    pub(crate) message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// A parsed, validated row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    /// Where it came from.
    pub(crate) place: Place,
    /// The device.
    pub(crate) device: NewDevice,
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
    /// Written by the simulator; informational only.
    #[serde(default)]
    #[allow(dead_code)]
    host_key_fingerprint: Option<String>,
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
pub(crate) fn parse(text: &str, format: Format) -> Result<Vec<Row>, Vec<RowError>> {
    let raw = match format {
        Format::Csv => parse_csv(text),
        Format::Yaml => parse_yaml(text),
        Format::Json => parse_json(text),
    }?;
    let mut rows = Vec::with_capacity(raw.len());
    let mut errors = Vec::new();
    let mut seen: HashMap<String, Place> = HashMap::new();
    for (place, entry) in raw {
        match entry.and_then(validate) {
            Ok(device) => {
                if let Some(first) = seen.get(&device.name) {
                    errors.push(RowError {
                        place,
                        message: format!(
                            "duplicate device name {:?} (first on {first})",
                            device.name
                        ),
                    });
                } else {
                    seen.insert(device.name.clone(), place);
                    rows.push(Row { place, device });
                }
            }
            Err(message) => errors.push(RowError { place, message }),
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

fn validate(e: Entry) -> Result<NewDevice, String> {
    let name = e.name.trim();
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "bad device name {:?} (empty or with spaces)",
            e.name
        ));
    }
    let host = e.host.trim();
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("bad host {:?}", e.host));
    }
    let port = e.port.unwrap_or(22);
    if port == 0 {
        return Err("port must be 1 to 65535".to_owned());
    }
    let platform = e.platform.trim();
    if platform.is_empty() {
        return Err("platform is empty".to_owned());
    }
    let username = e.username.trim();
    if username.is_empty() {
        return Err("username is empty".to_owned());
    }
    let mut device = NewDevice::new(name, host, platform, username).with_port(port);
    if let Some(c) = e
        .credential_ref
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
    {
        device = device.with_credential_ref(c);
    }
    if let Some(tags) = e.tags {
        device = device.with_tags(tags.into_vec());
    }
    if let Some(site) = e
        .site
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
    {
        device = device.with_site(site);
    }
    Ok(device)
}

const CSV_COLUMNS: [&str; 8] = [
    "name",
    "host",
    "port",
    "platform",
    "username",
    "credential_ref",
    "tags",
    "site",
];

fn parse_csv(text: &str) -> Result<RawRows, Vec<RowError>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .flexible(false)
        .from_reader(text.as_bytes());
    let header_error = |message: String| {
        vec![RowError {
            place: Place::Line(1),
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
        if !CSV_COLUMNS.contains(&h.as_str()) {
            return Err(header_error(format!(
                "unknown column {h:?} (columns: {})",
                CSV_COLUMNS.join(", ")
            )));
        }
        if index.insert(h.clone(), i).is_some() {
            return Err(header_error(format!("column {h:?} appears twice")));
        }
    }
    for required in ["name", "host", "platform", "username"] {
        if !index.contains_key(required) {
            return Err(header_error(format!("missing column {required:?}")));
        }
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                out.push((Place::Line(line), Err(csv_error_message(&e))));
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
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
                .map_err(|_| format!("port {p:?} is not a number from 1 to 65535")),
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
            host_key_fingerprint: None,
        });
        out.push((Place::Line(line), entry));
    }
    Ok(out)
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
    struct Wrapped<'a> {
        #[serde(borrow)]
        devices: Vec<&'a RawValue>,
    }
    let syntax = |e: serde_json::Error| {
        vec![RowError {
            place: Place::Line(e.line() as u64),
            message: format!("not a JSON inventory: {e}"),
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
            let line = line_of(text, offset);
            let entry = serde_json::from_str::<Entry>(raw.get()).map_err(|e| entry_message(&e));
            (Place::Line(line), entry)
        })
        .collect())
}

fn parse_yaml(text: &str) -> Result<RawRows, Vec<RowError>> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        vec![RowError {
            place: Place::Line(e.location().map_or(1, |l| l.line() as u64)),
            message: format!("not a YAML inventory: {e}"),
        }]
    })?;
    let items = match value {
        serde_yaml::Value::Sequence(items) => items,
        serde_yaml::Value::Mapping(mut m) => match m.remove("devices") {
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
            let entry = serde_yaml::from_value::<Entry>(item).map_err(|e| entry_message(&e));
            (place, entry)
        })
        .collect())
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
    match text.find(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

fn line_of(text: &str, offset: usize) -> u64 {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u64
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn empty_inventories_are_an_error() {
        assert!(parse("name,host,platform,username\n", Format::Csv).is_err());
        assert!(parse("[]", Format::Json).is_err());
    }
}
