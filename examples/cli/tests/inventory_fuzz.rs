//! Bad input, fuzzed with proptest: the inventory import behind `netauto devices import`.
//!
//! Arbitrary and mutated CSV, YAML and JSON never panic and answer either devices that keep
//! the validation's invariants or errors whose places exist in the input; generated
//! inventories round-trip through every format (with their rows' lines); every bad row, and
//! every duplicate name, is reported at its line and rejects the whole file; huge and deeply
//! nested files are errors, not stack overflows or hangs.
//!
//! 256 cases per property: some 5 to 10 s in a debug build. `PROPTEST_CASES=30000 cargo test
//! -p netauto-cli --release --test inventory_fuzz` hunts longer (some 15 s).

use std::time::{Duration, Instant};

use netauto_cli::inventory::{self, Format, MAX_FIELD_BYTES, MAX_INVENTORY_BYTES, Place, Row};
use netauto_core::NewDevice;
use proptest::prelude::*;
use proptest::sample::select;

mod inventory_gen;
use inventory_gen::*;

// ---------------------------------------------------------------------------------------------
// What every answer must satisfy.

/// The lines a place may name: 1 to one past the last line break (any kind YAML knows).
fn max_line(text: &str) -> u64 {
    let mut n = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => n += 1,
            '\r' if chars.peek() != Some(&'\n') => n += 1,
            _ => {}
        }
    }
    n
}

fn place_exists(text: &str, p: Place) -> bool {
    match p {
        Place::Line(l) => (1..=max_line(text)).contains(&l),
        Place::Entry(e) => e >= 1 && e <= text.len(),
    }
}

/// Ok: devices that keep the validation's invariants, at places that exist, with unique
/// names. Err: at least one error, each with a message and a place that exists.
fn check_answer(
    text: &str,
    answer: &Result<Vec<Row>, Vec<inventory::RowError>>,
) -> Result<(), TestCaseError> {
    match answer {
        Ok(rows) => {
            prop_assert!(!rows.is_empty());
            let mut names = std::collections::HashSet::new();
            for r in rows {
                prop_assert!(place_exists(text, r.place), "{:?} in {:?}", r.place, text);
                let d = &r.device;
                prop_assert!(names.insert(d.name.clone()), "duplicate {:?}", d.name);
                prop_assert!(d.port >= 1);
                for f in [&d.name, &d.host] {
                    prop_assert!(
                        !f.is_empty() && !f.chars().any(|c| c.is_whitespace() || c.is_control()),
                        "{:?}",
                        f
                    );
                }
                for f in [
                    Some(&d.platform),
                    Some(&d.username),
                    d.credential_ref.as_ref(),
                    d.site.as_ref(),
                ]
                .into_iter()
                .flatten()
                .chain(&d.tags)
                {
                    prop_assert!(!f.is_empty() && f.trim() == f, "{:?}", f);
                    prop_assert!(!f.chars().any(char::is_control), "{:?}", f);
                    prop_assert!(f.len() <= MAX_FIELD_BYTES);
                }
            }
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert!(!e.message.is_empty());
                prop_assert!(place_exists(text, e.place), "{} in {:?}", e, text);
            }
        }
    }
    Ok(())
}

fn check_all_formats(text: &str) -> Result<(), TestCaseError> {
    for f in FORMATS {
        check_answer(text, &inventory::parse(text, f))?;
    }
    Ok(())
}

fn columns() -> impl Strategy<Value = Vec<&'static str>> {
    Just(inventory::CSV_COLUMNS.to_vec()).prop_shuffle()
}

/// A valid file: (devices, writer, rendered).
fn valid_file() -> impl Strategy<Value = (Vec<Dev>, Writer, Rendered)> {
    (devs(), writer(), columns(), style()).prop_map(|(devs, w, cols, s)| {
        let items: Vec<Item> = devs.iter().map(|d| item(d, s)).collect();
        let r = render(w, &items, &cols, s);
        (devs, w, r)
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    Replace(usize, char),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (
            any::<usize>(),
            prop_oneof![
                ".{1,4}",
                "[-:,\\[\\]{}\"'#\n &*!|>%@?\\\\\r\t]{1,3}",
                select(SPECIAL).prop_map(str::to_owned),
            ]
        )
            .prop_map(|(a, s)| Mutation::Insert(a, s)),
        (any::<usize>(), any::<char>()).prop_map(|(a, c)| Mutation::Replace(a, c)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, m: &Mutation) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Delete(a, n) => {
            let a = at(*a, chars.len());
            let b = (a + n).min(chars.len());
            chars.drain(a..b);
        }
        Mutation::Insert(a, s) => {
            let a = at(*a, chars.len());
            chars.splice(a..a, s.chars());
        }
        Mutation::Replace(a, c) => {
            if !chars.is_empty() {
                let a = *a % chars.len();
                chars[a] = *c;
            }
        }
        Mutation::Truncate(a) => chars.truncate(at(*a, chars.len())),
        Mutation::DuplicateLine(a) | Mutation::SwapLines(a, _) => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            if lines.is_empty() {
                return text.to_owned();
            }
            let a = *a % lines.len();
            if let Mutation::SwapLines(_, b) = m {
                let b = *b % lines.len();
                lines.swap(a, b);
            } else {
                lines.insert(a, lines[a]);
            }
            return lines.concat();
        }
    }
    chars.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// The properties.

/// `cases` cases, or `PROPTEST_CASES` if set (for a longer hunt, see the top of the file).
fn config(cases: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_some() {
        default
    } else {
        ProptestConfig { cases, ..default }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_name_real_places(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        check_all_formats(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn arbitrary_strings_never_panic_and_errors_name_real_places(
        text in prop_oneof![
            ".{0,200}",
            "[-:,\\[\\]{}\"'#\n &*!|>%@?\\\\a-z0-9\r\t]{0,200}",
            // Header-shaped: a real header, then junk rows.
            "(name|host|port|platform|username|tags|site|credential_ref|NAME|x)(,(name|host|port|platform|username|tags|site|credential_ref| name|)){0,8}\n([a-z0-9,\" ;#\r]{0,30}\n){0,6}",
            // YAML-shaped.
            "(devices:\n)?(( {0,2}- )?(name|host|port|platform|username|tags|site|x): ?[a-z0-9'\"~\\[\\],{}:-]{0,8}\n){0,12}",
            // JSON-shaped.
            "[\\[{]?(\\{\"(name|host|port|platform|username|tags|devices)\": ?(\"[a-z ]{0,4}\"|[0-9-]{1,6}|null|\\[|\\{|true),? ?\\}?,?\n?){0,8}[\\]}]?",
        ],
    ) {
        check_all_formats(&text)?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn generated_inventories_round_trip_with_their_lines((devs, w, r) in valid_file()) {
        let rows = match inventory::parse(&r.text, w.format()) {
            Ok(rows) => rows,
            Err(e) => {
                return Err(TestCaseError::fail(format!("{e:?}\nin {:?} ({w:?}):\n{}", w.format(), r.text)));
            }
        };
        let got: Vec<NewDevice> = rows.iter().map(|r| r.device.clone()).collect();
        let want: Vec<NewDevice> = devs.iter().map(Dev::expected).collect();
        prop_assert_eq!(got, want, "{:?}:\n{}", w, r.text);
        let places: Vec<Place> = rows.iter().map(|r| r.place).collect();
        let want_places: Vec<Place> = if r.lines.is_empty() {
            (1..=devs.len()).map(Place::Entry).collect()
        } else {
            r.lines.iter().map(|l| Place::Line(*l)).collect()
        };
        prop_assert_eq!(places, want_places, "{:?}:\n{}", w, r.text);
    }

    #[test]
    fn mutated_valid_files_never_panic_and_errors_name_real_places(
        (_, w, r) in valid_file(),
        ms in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut text = r.text;
        for m in &ms {
            text = mutate(&text, m);
        }
        check_answer(&text, &inventory::parse(&text, w.format()))?;
        // And in the other formats, since a file may be given the wrong extension.
        check_all_formats(&text)?;
    }
}

/// Ways to break one row so that the file stays well-formed.
#[derive(Debug, Clone, Copy)]
enum Corruption {
    EmptyName,
    NameWithSpace,
    PortZero,
    PortTooBig,
    PortNotANumber,
    EmptyHost,
    BlankPlatform,
    ControlCharInUsername,
    LongSite,
    /// The name of the row before it.
    Duplicate,
    /// A field no inventory has (an extra cell in CSV).
    UnknownField,
    MissingUsername,
}

fn corruption() -> impl Strategy<Value = Corruption> {
    select(
        &[
            Corruption::EmptyName,
            Corruption::NameWithSpace,
            Corruption::PortZero,
            Corruption::PortTooBig,
            Corruption::PortNotANumber,
            Corruption::EmptyHost,
            Corruption::BlankPlatform,
            Corruption::ControlCharInUsername,
            Corruption::LongSite,
            Corruption::Duplicate,
            Corruption::UnknownField,
            Corruption::MissingUsername,
        ][..],
    )
}

/// Breaks row `k`; `Duplicate` takes the name of row `source` (an intact row before it).
fn corrupt(items: &mut [Item], k: usize, c: Corruption, source: Option<usize>) {
    let source_name = source.map(|j| items[j][0].1.clone());
    let it = &mut items[k];
    let set = |it: &mut Item, key: &str, v: Cell| match it.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = v,
        None => it.push((key.to_owned(), v)),
    };
    match c {
        Corruption::EmptyName => set(it, "name", Cell::Str(String::new())),
        Corruption::NameWithSpace => set(it, "name", Cell::Str("core sw".to_owned())),
        Corruption::PortZero => set(it, "port", Cell::Int(0)),
        Corruption::PortTooBig => set(it, "port", Cell::Int(65_536)),
        Corruption::PortNotANumber => set(it, "port", Cell::Str("ssh".to_owned())),
        Corruption::EmptyHost => set(it, "host", Cell::Str(String::new())),
        Corruption::BlankPlatform => set(it, "platform", Cell::Str("   ".to_owned())),
        Corruption::ControlCharInUsername => {
            set(it, "username", Cell::Str("ad\u{7}min".to_owned()))
        }
        Corruption::LongSite => set(it, "site", Cell::Str("s".repeat(MAX_FIELD_BYTES + 1))),
        Corruption::Duplicate => match source_name {
            Some(n) => set(it, "name", n),
            None => set(it, "name", Cell::Str(String::new())),
        },
        Corruption::UnknownField => set(it, "usernme", Cell::Str("typo".to_owned())),
        Corruption::MissingUsername => it.retain(|(k, _)| k != "username"),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn bad_rows_are_each_reported_at_their_line_and_nothing_is_accepted(
        devs in devs(),
        w in writer(),
        cols in columns(),
        s in style(),
        bad in prop::collection::vec((any::<prop::sample::Index>(), corruption()), 1..4),
    ) {
        let mut items: Vec<Item> = devs.iter().map(|d| item(d, s)).collect();
        let bad: std::collections::BTreeMap<usize, Corruption> =
            bad.into_iter().map(|(k, c)| (k.index(items.len()), c)).collect();
        let mut sources = std::collections::BTreeMap::new();
        for (&k, &c) in &bad {
            let source = (0..k).rev().find(|j| !bad.contains_key(j));
            if let (Corruption::Duplicate, Some(j)) = (c, source) {
                sources.insert(k, j);
            }
            corrupt(&mut items, k, c, source);
        }
        let r = render(w, &items, &cols, s);
        let place = |k: usize| r.lines.get(k).map_or(Place::Entry(k + 1), |l| Place::Line(*l));
        let errors = match inventory::parse(&r.text, w.format()) {
            Ok(rows) => {
                return Err(TestCaseError::fail(format!(
                    "{bad:?} accepted: {rows:?}\n{w:?}:\n{}", r.text
                )));
            }
            Err(errors) => errors,
        };
        // One error for each bad row, at its place, and none for the others.
        let got: Vec<Place> = errors.iter().map(|e| e.place).collect();
        let want: Vec<Place> = bad.keys().map(|k| place(*k)).collect();
        prop_assert_eq!(got, want, "{:?} {:?} {:?}:\n{}", bad, errors, w, r.text);
        for (e, k) in errors.iter().zip(bad.keys()) {
            if let Some(j) = sources.get(k) {
                prop_assert!(
                    e.message.contains("duplicate")
                        && e.message.contains(&format!("(first on {})", place(*j))),
                    "{}", e
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Huge and deeply nested input: an error, quickly, never a stack overflow.

fn assert_error_soon(text: &str, format: Format, what: &str) -> Vec<inventory::RowError> {
    let start = Instant::now();
    let answer = inventory::parse(text, format);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "{what} as {format:?} took {took:?}"
    );
    match answer {
        Ok(rows) => panic!("{what} as {format:?} accepted {} rows", rows.len()),
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(place_exists(text, e.place), "{what}: {e}");
            }
            errors
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    const DEPTH: usize = 10_000;
    let brackets = format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    let braces = format!("{}1{}", "{\"a\":".repeat(DEPTH), "}".repeat(DEPTH));
    let in_devices = format!("{{\"devices\": {brackets}}}");
    let in_entry = format!("[{{\"name\": {brackets}}}]");
    let yaml_flow_maps = format!("{}1{}", "{a: ".repeat(DEPTH), "}".repeat(DEPTH));
    let yaml_dashes = format!("{}x\n", "- ".repeat(DEPTH));
    let yaml_in_devices = format!("devices:\n  - name: {brackets}\n");
    let cases = [
        (brackets.as_str(), "brackets"),
        (braces.as_str(), "braces"),
        (in_devices.as_str(), "nested devices"),
        (in_entry.as_str(), "nested name"),
        (yaml_flow_maps.as_str(), "flow maps"),
        (yaml_dashes.as_str(), "block sequences"),
        (yaml_in_devices.as_str(), "nested yaml name"),
    ];
    for (text, what) in cases {
        for f in FORMATS {
            assert_error_soon(text, f, what);
        }
    }
    // Deeply indented block mappings (2,000 levels: 4 MB of indentation).
    let mut indented = String::new();
    for i in 0..2_000 {
        indented.push_str(&" ".repeat(i * 2));
        indented.push_str("a:\n");
    }
    assert_error_soon(&indented, Format::Yaml, "indented mappings");
}

#[test]
fn yaml_alias_bombs_are_an_error() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    text.push_str("devices: [*a9]\n");
    assert_error_soon(&text, Format::Yaml, "billion laughs");
}

#[test]
fn a_10_mb_field_is_an_error_naming_its_row() {
    let big = "x".repeat(10 << 20);
    let csv = format!("name,host,platform,username\nr1,h,p,u\nr2,h,{big},u\n");
    let yaml = format!(
        "- {{name: r1, host: h, platform: p, username: u}}\n- {{name: r2, host: h, platform: {big}, username: u}}\n"
    );
    let json = format!(
        "[{{\"name\": \"r1\", \"host\": \"h\", \"platform\": \"p\", \"username\": \"u\"}},\n{{\"name\": \"r2\", \"host\": \"h\", \"platform\": \"{big}\", \"username\": \"u\"}}]"
    );
    for (text, f) in [
        (csv, Format::Csv),
        (yaml, Format::Yaml),
        (json, Format::Json),
    ] {
        let errors = assert_error_soon(&text, f, "10 MB field");
        assert_eq!(errors.len(), 1, "{f:?}: {errors:?}");
        let line = match f {
            Format::Csv => 3,
            Format::Yaml | Format::Json => 2,
        };
        assert_eq!(errors[0].place, Place::Line(line), "{f:?}");
        assert!(
            errors[0].message.contains("platform") && errors[0].message.contains("long"),
            "{}",
            errors[0]
        );
    }
    // A field that never ends (an unclosed quote) is an error too.
    let unclosed = format!("name,host,platform,username\nr1,h,\"{big},u\n");
    assert_error_soon(&unclosed, Format::Csv, "unclosed quote");
    let unclosed = format!("[{{\"name\": \"{big}");
    assert_error_soon(&unclosed, Format::Json, "unclosed string");
    assert_error_soon(&unclosed, Format::Yaml, "unclosed string");
}

#[test]
fn an_inventory_over_the_size_limit_is_an_error_at_once() {
    let text = " ".repeat(MAX_INVENTORY_BYTES + 1);
    for f in FORMATS {
        let errors = assert_error_soon(&text, f, "oversized file");
        assert!(errors[0].message.contains("larger than"), "{}", errors[0]);
    }
}

/// Many rows parse in time linear in the file: 50,000 devices in each format.
#[test]
fn many_rows_parse_quickly() {
    const N: usize = 50_000;
    let mut csv = String::from("name,host,platform,username\n");
    let mut json = String::from("[\n");
    let mut yaml = String::new();
    for i in 0..N {
        csv.push_str(&format!(
            "r{i},10.0.{}.{},linux,root\n",
            i / 256 % 256,
            i % 256
        ));
        json.push_str(&format!(
            "{}{{\"name\": \"r{i}\", \"host\": \"h\", \"platform\": \"linux\", \"username\": \"root\"}}\n",
            if i == 0 { "" } else { "," }
        ));
        yaml.push_str(&format!(
            "- {{name: r{i}, host: h, platform: linux, username: root}}\n"
        ));
    }
    json.push(']');
    for (text, f) in [
        (csv, Format::Csv),
        (json, Format::Json),
        (yaml, Format::Yaml),
    ] {
        let start = Instant::now();
        let rows = inventory::parse(&text, f).expect("valid");
        let took = start.elapsed();
        assert_eq!(rows.len(), N);
        assert_eq!(
            rows[N - 1].place,
            Place::Line(N as u64 + u64::from(f != Format::Yaml))
        );
        assert!(took < Duration::from_secs(20), "{f:?}: {took:?}");
    }
}
