//! The README's platform table is generated from the shipped definitions: this test fails
//! when they drift apart. `NETAUTO_UPDATE_README=1 cargo test -p netauto-core --test
//! readme_platforms` writes the current table into the README.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use netauto_core::platform::Platforms;

const BEGIN: &str = "<!-- platforms:begin (generated: NETAUTO_UPDATE_README=1 cargo test -p netauto-core --test readme_platforms) -->\n";
const END: &str = "<!-- platforms:end -->";

#[test]
fn the_readme_platform_table_matches_the_shipped_definitions() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let table = Platforms::builtin().markdown_table();
    let start = readme
        .find(BEGIN)
        .expect("the README has the table's begin marker")
        + BEGIN.len();
    let end = readme[start..].find(END).expect("and its end marker") + start;
    if std::env::var("NETAUTO_UPDATE_README").as_deref() == Ok("1") {
        let updated = format!("{}{table}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(
        &readme[start..end],
        table,
        "the README's platform table is stale: run NETAUTO_UPDATE_README=1 cargo test -p netauto-core --test readme_platforms"
    );
}
