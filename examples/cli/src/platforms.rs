//! `netauto platforms list|show`: the platform definitions this program uses (the shipped
//! ones and `NETAUTO_PLATFORMS_DIR`'s).

use anyhow::bail;
use netauto_core::platform::Platforms;
use serde::Serialize;

use crate::table::Table;

/// One platform in `list --json`.
#[derive(Serialize)]
struct Line<'a> {
    name: &'a str,
    aliases: &'a [String],
    transport: &'a str,
    description: &'a str,
    origin: &'a str,
}

/// Prints every platform, by name.
pub(crate) fn list(platforms: &Platforms, json: bool) -> anyhow::Result<()> {
    let mut table = Table::new(&["NAME", "ALIASES", "TRANSPORT", "DESCRIPTION", "ORIGIN"]);
    for p in platforms.iter() {
        let line = Line {
            name: &p.name,
            aliases: &p.aliases,
            transport: p.transport.as_str(),
            description: &p.description,
            origin: platforms.origin(&p.name).unwrap_or("?"),
        };
        if json {
            println!("{}", serde_json::to_string(&line)?);
        } else {
            table.row(vec![
                line.name.to_owned(),
                line.aliases.join(","),
                line.transport.to_owned(),
                line.description.to_owned(),
                line.origin.to_owned(),
            ]);
        }
    }
    if !json {
        print!("{}", table.render());
    }
    Ok(())
}

/// Prints one platform's definition as TOML, after a comment saying where it comes from.
pub(crate) fn show(platforms: &Platforms, name: &str) -> anyhow::Result<()> {
    let platform = match platforms.require(name) {
        Ok(p) => p,
        Err(e) => bail!("{e}"),
    };
    let origin = platforms.origin(name).unwrap_or("?");
    println!("# {} ({origin})\n{}", platform.name, platform.to_toml());
    Ok(())
}
