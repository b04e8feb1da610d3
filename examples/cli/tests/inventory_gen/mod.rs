//! Generators and writers of the inventory fuzz tests: devices, and every way of writing them
//! down as CSV, YAML and JSON (with the line where each row starts).

use std::net::{Ipv4Addr, Ipv6Addr};

use netauto_cli::inventory::Format;
use netauto_core::NewDevice;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

pub(crate) const FORMATS: [Format; 3] = [Format::Csv, Format::Yaml, Format::Json];

/// Strings that YAML (1.1 or 1.2) or CSV read as something else when written plainly.
pub(crate) const SPECIAL: &[&str] = &[
    "no",
    "No",
    "NO",
    "yes",
    "y",
    "n",
    "off",
    "on",
    "true",
    "False",
    "~",
    "null",
    "Null",
    "0x10",
    "0o17",
    "017",
    "1e3",
    "-1",
    "+1",
    "1_000",
    ".inf",
    "-.inf",
    ".nan",
    "123",
    "0",
    "1.5",
    "2001-01-01",
    "12:30:45",
    "=",
    "<<",
    "&a",
    "*a",
    "!tag",
    "!!str",
    "%x",
    "@x",
    "`x",
    "|",
    "|-",
    ">",
    "'q'",
    "\"q\"",
    "{a}",
    "[a]",
    "]",
    "}",
    "-",
    "--",
    "---",
    "...",
    "?",
    ":",
    "::1",
    "a:b",
    "#",
    "#x",
    "x#y",
    "\\",
    "\\n",
    "'",
    "\"",
    "\"\"",
    ",",
    ";",
    "a,b",
    "a;b",
    "é",
    "交换机",
    "\u{feff}x",
    "x\u{200b}",
];

pub(crate) fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9][a-zA-Z0-9._:/@#,;\"'-]{0,15}",
        2 => select(SPECIAL).prop_map(str::to_owned),
        1 => "[^\\s\\p{Cc}]{1,10}",
    ]
    .prop_filter("no whitespace", |s| !s.chars().any(char::is_whitespace))
}

/// Free text: no control characters, no surrounding whitespace (the parser trims).
pub(crate) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => token(),
        1 => (
            token(),
            prop_oneof![
                Just(" "), Just("  "), Just(" # "), Just(": "), Just(" - "), Just("\u{a0}"),
                Just("\u{2028}"), Just("\u{2029}"), Just("\u{3000}"), Just(" \\n "),
            ],
            token(),
        )
            .prop_map(|(a, sep, b)| format!("{a}{sep}{b}")),
        1 => token().prop_map(|t| format!("- {t}")),
        1 => "[^\\s\\p{Cc}][^\\p{Cc}]{0,20}[^\\s\\p{Cc}]",
    ]
}

pub(crate) fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<Ipv4Addr>().prop_map(|a| a.to_string()),
        any::<Ipv6Addr>().prop_map(|a| a.to_string()),
        Just("::1".to_owned()),
        "fe80::[0-9a-f]{1,4}%eth[0-9]",
        "\\[[0-9a-f:]{2,12}\\]",
        "[a-z][a-z0-9-]{0,10}(\\.[a-z0-9-]{1,10}){0,3}",
        token(),
    ]
}

/// One tag: no separator of the CSV form (`;`, `,`, space).
pub(crate) fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_.:/+#@!'\"-]{1,12}",
        token().prop_map(|t| t.replace([';', ','], "_")),
    ]
}

/// A device as the generator means it: every field already normalized.
#[derive(Debug, Clone)]
pub(crate) struct Dev {
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    pub(crate) platform: String,
    pub(crate) username: String,
    pub(crate) credential_ref: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) site: Option<String>,
}

impl Dev {
    pub(crate) fn expected(&self) -> NewDevice {
        let mut d = NewDevice::new(&self.name, &self.host, &self.platform, &self.username)
            .with_port(self.port.unwrap_or(22))
            .with_tags(self.tags.clone());
        if let Some(c) = &self.credential_ref {
            d = d.with_credential_ref(c.clone());
        }
        if let Some(s) = &self.site {
            d = d.with_site(s.clone());
        }
        d
    }
}

pub(crate) fn dev() -> impl Strategy<Value = Dev> {
    (
        token(),
        host(),
        proptest::option::of(1u16..),
        text(),
        text(),
        proptest::option::of(text()),
        prop::collection::vec(tag(), 0..4),
        proptest::option::of(text()),
    )
        .prop_map(
            |(name, host, port, platform, username, credential_ref, tags, site)| Dev {
                name,
                host,
                port,
                platform,
                username,
                credential_ref,
                tags,
                site,
            },
        )
}

/// 1 to 8 devices with unique names.
pub(crate) fn devs() -> impl Strategy<Value = Vec<Dev>> {
    prop::collection::vec(dev(), 1..8).prop_map(|mut v| {
        let mut seen = std::collections::HashSet::new();
        for (i, d) in v.iter_mut().enumerate() {
            if !seen.insert(d.name.clone()) {
                d.name = format!("{}-{i}", d.name);
                seen.insert(d.name.clone());
            }
        }
        v
    })
}

// ---------------------------------------------------------------------------------------------
// A format-neutral row, and writers for every format that also say on which line each row
// starts.

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Str(String),
    Int(i64),
    Null,
    List(Vec<String>),
}

pub(crate) type Item = Vec<(String, Cell)>;

/// How optional things and tags are written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    /// Absent optional fields: left out (false) or written as null / an empty cell (true).
    pub(crate) nulls: bool,
    /// Tags as one string (true) or a list (false; CSV always uses one string).
    pub(crate) tags_as_text: bool,
    pub(crate) tag_sep: &'static str,
}

pub(crate) fn style() -> impl Strategy<Value = Style> {
    (
        any::<bool>(),
        any::<bool>(),
        select(&[";", "; ", ",", " ", " ;, "][..]),
    )
        .prop_map(|(nulls, tags_as_text, tag_sep)| Style {
            nulls,
            tags_as_text,
            tag_sep,
        })
}

pub(crate) fn item(d: &Dev, s: Style) -> Item {
    let mut out = vec![
        ("name".to_owned(), Cell::Str(d.name.clone())),
        ("host".to_owned(), Cell::Str(d.host.clone())),
    ];
    let opt = |out: &mut Item, key: &str, v: Option<Cell>| match v {
        Some(c) => out.push((key.to_owned(), c)),
        None if s.nulls => out.push((key.to_owned(), Cell::Null)),
        None => {}
    };
    opt(&mut out, "port", d.port.map(|p| Cell::Int(i64::from(p))));
    out.push(("platform".to_owned(), Cell::Str(d.platform.clone())));
    out.push(("username".to_owned(), Cell::Str(d.username.clone())));
    opt(
        &mut out,
        "credential_ref",
        d.credential_ref.clone().map(Cell::Str),
    );
    let tags = if d.tags.is_empty() {
        None
    } else if s.tags_as_text {
        Some(Cell::Str(d.tags.join(s.tag_sep)))
    } else {
        Some(Cell::List(d.tags.clone()))
    };
    opt(&mut out, "tags", tags);
    opt(&mut out, "site", d.site.clone().map(Cell::Str));
    out
}

pub(crate) fn to_json(item: &Item) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, c)| {
                let v = match c {
                    Cell::Str(s) => Value::from(s.as_str()),
                    Cell::Int(n) => Value::from(*n),
                    Cell::Null => Value::Null,
                    Cell::List(l) => Value::from(l.clone()),
                };
                (k.clone(), v)
            })
            .collect(),
    )
}

pub(crate) fn lines_in(s: &str) -> u64 {
    s.bytes().filter(|b| *b == b'\n').count() as u64
}

/// A rendered inventory and the line where each item starts.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    pub(crate) text: String,
    pub(crate) lines: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Writer {
    Csv(CsvLook),
    /// serde_yaml's emitter, plain scalars where it thinks that safe.
    YamlSerde {
        wrapped: bool,
        indent: bool,
    },
    /// Every scalar single- or double-quoted by hand, block or flow items.
    YamlQuoted {
        wrapped: bool,
        flow: bool,
        seed: u64,
    },
    /// JSON text parsed as YAML.
    YamlJson {
        pretty: bool,
    },
    Json {
        wrapped: bool,
        pretty: bool,
        crlf: bool,
    },
}

impl Writer {
    pub(crate) fn format(self) -> Format {
        match self {
            Self::Csv(_) => Format::Csv,
            Self::YamlSerde { .. } | Self::YamlQuoted { .. } | Self::YamlJson { .. } => {
                Format::Yaml
            }
            Self::Json { .. } => Format::Json,
        }
    }
}

pub(crate) fn writer() -> impl Strategy<Value = Writer> {
    prop_oneof![
        2 => (0u8..3, any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(quote, crlf, upper, comments, pad)| {
                Writer::Csv(CsvLook { quote, crlf, upper, comments, pad })
            }
        ),
        1 => (any::<bool>(), any::<bool>())
            .prop_map(|(wrapped, indent)| Writer::YamlSerde { wrapped, indent }),
        1 => (any::<bool>(), any::<bool>(), any::<u64>())
            .prop_map(|(wrapped, flow, seed)| Writer::YamlQuoted { wrapped, flow, seed }),
        1 => any::<bool>().prop_map(|pretty| Writer::YamlJson { pretty }),
        1 => (any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(wrapped, pretty, crlf)| Writer::Json { wrapped, pretty, crlf }),
    ]
}

pub(crate) fn render(w: Writer, items: &[Item], columns: &[&str], s: Style) -> Rendered {
    match w {
        Writer::Csv(look) => render_csv(items, columns, s, look),
        Writer::YamlSerde { wrapped, indent } => {
            let mut text = String::new();
            let pad = if wrapped && indent { "  " } else { "" };
            if wrapped {
                text.push_str("# an inventory\ndevices:\n");
            }
            let mut lines = Vec::new();
            for it in items {
                lines.push(lines_in(&text) + 1);
                let one = serde_yaml::to_string(&vec![to_json(it)]).expect("yaml");
                for l in one.lines() {
                    text.push_str(pad);
                    text.push_str(l);
                    text.push('\n');
                }
            }
            Rendered { text, lines }
        }
        Writer::YamlQuoted {
            wrapped,
            flow,
            seed,
        } => render_yaml_quoted(items, wrapped, flow, seed),
        Writer::YamlJson { pretty } => {
            let mut r = render_json(items, false, pretty);
            r.text = yaml_safe_json(&r.text);
            // Flow style has no `- ` lines: the rows are numbered entries instead.
            r.lines.clear();
            r
        }
        Writer::Json {
            wrapped,
            pretty,
            crlf,
        } => {
            let mut r = render_json(items, wrapped, pretty);
            if crlf {
                r.text = r.text.replace('\n', "\r\n");
            }
            r
        }
    }
}

pub(crate) fn render_json(items: &[Item], wrapped: bool, pretty: bool) -> Rendered {
    let mut text = String::from(if wrapped {
        "{\n  \"devices\": [\n"
    } else {
        "[\n"
    });
    let mut lines = Vec::new();
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            text.push_str(",\n");
        }
        lines.push(lines_in(&text) + 1);
        let v = to_json(it);
        let one = if pretty {
            serde_json::to_string_pretty(&v)
        } else {
            serde_json::to_string(&v)
        };
        text.push_str(&one.expect("json"));
    }
    text.push_str(if wrapped { "\n  ]\n}\n" } else { "\n]\n" });
    Rendered { text, lines }
}

/// How a CSV file is written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CsvLook {
    /// 0: quotes where needed, 1: always, 2: around all but numbers.
    pub(crate) quote: u8,
    pub(crate) crlf: bool,
    /// NAME,HOST,… instead of name,host,….
    pub(crate) upper: bool,
    /// A comment line and a blank line before every other row.
    pub(crate) comments: bool,
    /// A space on both sides of every header name and value.
    pub(crate) pad: bool,
}

pub(crate) fn render_csv(items: &[Item], columns: &[&str], s: Style, look: CsvLook) -> Rendered {
    let CsvLook {
        quote,
        crlf,
        upper,
        comments,
        pad,
    } = look;
    let mut builder = csv::WriterBuilder::new();
    builder
        .comment(Some(b'#'))
        .flexible(true)
        .quote_style(match quote {
            0 => csv::QuoteStyle::Necessary,
            1 => csv::QuoteStyle::Always,
            _ => csv::QuoteStyle::NonNumeric,
        })
        .terminator(if crlf {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        });
    let line = |record: &[String]| {
        let mut w = builder.from_writer(Vec::new());
        let padded = record
            .iter()
            .map(|v| if pad { format!(" {v} ") } else { v.clone() });
        w.write_record(padded).expect("csv record");
        String::from_utf8(w.into_inner().expect("csv")).expect("utf-8")
    };
    let header: Vec<String> = columns
        .iter()
        .map(|c| {
            if upper {
                c.to_ascii_uppercase()
            } else {
                (*c).to_owned()
            }
        })
        .collect();
    let mut text = line(&header);
    let mut lines = Vec::new();
    for (i, it) in items.iter().enumerate() {
        if comments && i % 2 == 1 {
            let eol = if crlf { "\r\n" } else { "\n" };
            text.push_str(&format!("# row {i}{eol}{eol}"));
        }
        lines.push(lines_in(&text) + 1);
        let mut record: Vec<String> = columns
            .iter()
            .map(|c| match it.iter().find(|(k, _)| k == c).map(|(_, v)| v) {
                Some(Cell::Str(v)) => v.clone(),
                Some(Cell::Int(n)) => n.to_string(),
                Some(Cell::List(l)) => l.join(s.tag_sep),
                Some(Cell::Null) | None => String::new(),
            })
            .collect();
        // Keys that are not columns are extra cells (a corrupted row).
        for (k, v) in it {
            if !columns.contains(&k.as_str()) {
                record.push(match v {
                    Cell::Str(v) => v.clone(),
                    _ => "x".to_owned(),
                });
            }
        }
        text.push_str(&line(&record));
    }
    Rendered { text, lines }
}

/// A tiny deterministic generator, so one proptest value can drive many small choices.
pub(crate) fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Whether YAML allows `c` in a file unescaped (its `c-printable`).
pub(crate) fn yaml_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// JSON text (from serde_json) that is also YAML: characters YAML does not allow escaped.
pub(crate) fn yaml_safe_json(json: &str) -> String {
    json.chars()
        .map(|c| {
            if yaml_printable(c) {
                c.to_string()
            } else {
                format!("\\u{:04x}", u32::from(c))
            }
        })
        .collect()
}

pub(crate) fn yaml_quote(s: &str, seed: &mut u64) -> String {
    if next(seed).is_multiple_of(2) && s.chars().all(yaml_printable) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        yaml_safe_json(&serde_json::to_string(s).expect("json string"))
    }
}

pub(crate) fn yaml_cell(c: &Cell, seed: &mut u64) -> String {
    match c {
        Cell::Str(s) => yaml_quote(s, seed),
        Cell::Int(n) => n.to_string(),
        Cell::Null => ["~", "null", ""][(next(seed) % 3) as usize].to_owned(),
        Cell::List(l) => format!(
            "[{}]",
            l.iter()
                .map(|t| yaml_quote(t, seed))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Hand-written YAML, every choice drawn from `seed`: quoted or block scalars, block or flow
/// items, `\r\n` or `\n`, `---`/`...` markers, comment and blank lines between items.
pub(crate) fn render_yaml_quoted(items: &[Item], wrapped: bool, flow: bool, seed: u64) -> Rendered {
    let mut seed = seed | 1;
    let eol = if next(&mut seed).is_multiple_of(4) {
        "\r\n"
    } else {
        "\n"
    };
    let markers = next(&mut seed).is_multiple_of(4);
    let mut text = String::new();
    if markers {
        text.push_str("--- # inventory");
        text.push_str(eol);
    }
    let pad = if wrapped {
        text.push_str("devices:");
        text.push_str(eol);
        "  "
    } else {
        ""
    };
    let mut lines = Vec::new();
    for it in items {
        match next(&mut seed) % 6 {
            0 => text.push_str(&format!("{pad}# - name: commented-out{eol}")),
            1 => text.push_str(eol),
            _ => {}
        }
        lines.push(lines_in(&text) + 1);
        if flow {
            let fields: Vec<String> = it
                .iter()
                .map(|(k, c)| format!("{k}: {}", yaml_cell(c, &mut seed)))
                .collect();
            text.push_str(&format!("{pad}- {{{}}}{eol}", fields.join(", ")));
        } else {
            for (i, (k, c)) in it.iter().enumerate() {
                let lead = if i == 0 { "- " } else { "  " };
                let v = match c {
                    Cell::Str(v)
                        if !v.is_empty()
                            && v.chars().all(yaml_printable)
                            // libyaml (YAML 1.1) breaks lines there, even in a block scalar.
                            && !v.contains(['\u{2028}', '\u{2029}'])
                            && next(&mut seed).is_multiple_of(4) =>
                    {
                        format!("|-{eol}{pad}    {v}")
                    }
                    _ => yaml_cell(c, &mut seed),
                };
                let v = if v.is_empty() { v } else { format!(" {v}") };
                text.push_str(&format!("{pad}{lead}{k}:{v}{eol}"));
            }
        }
    }
    if markers {
        text.push_str("...");
        text.push_str(eol);
    }
    Rendered { text, lines }
}
