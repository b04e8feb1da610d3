//! `netauto devices add|import|list` and the device selection of `bulk run`.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context, bail};
use netauto_core::platform::Platforms;
use netauto_core::{Conflict, Device, DeviceId, Error, NewDevice, RunStore};

use crate::table::Table;
use crate::terminal;
use netauto_cli::inventory::{self, Format};

/// Creates one device, checked as an inventory row is ([`inventory::validate_device`]).
pub(crate) async fn add(
    store: &dyn RunStore,
    platforms: &Platforms,
    device: NewDevice,
) -> anyhow::Result<()> {
    let device = match inventory::check_device(device, platforms) {
        Ok(device) => device,
        Err(problem) => bail!("no device added: {problem}"),
    };
    let name = device.name.clone();
    match store.create_device(device).await {
        Ok(d) => {
            println!("{}", d.id);
            eprintln!("device {} added with id {}", d.name, d.id);
            Ok(())
        }
        Err(Error::Conflict(Conflict::Exists { .. })) => {
            bail!("a device named {name:?} already exists")
        }
        Err(e) => Err(e.into()),
    }
}

/// Imports an inventory file: every row is parsed and checked (format, duplicates, names
/// already in the database) before the first device is created.
pub(crate) async fn import(
    store: &dyn RunStore,
    platforms: &Platforms,
    path: &Path,
    format: Option<Format>,
) -> anyhow::Result<()> {
    let shown = path.display();
    let format = format
        .or_else(|| Format::from_path(path))
        .with_context(|| {
            format!(
                "{shown}: cannot tell the format from the file name; pass --format csv|yaml|json"
            )
        })?;
    // Read one byte past the limit, so a huge file is refused by `parse` and not read whole.
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(inventory::MAX_INVENTORY_BYTES as u64 + 1)
                .read_to_string(&mut text)
        })
        .with_context(|| format!("cannot read {shown}"))?;
    let total = inventory::import(store, &text, format, platforms)
        .await
        .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    eprintln!("imported {total} devices from {shown}");
    Ok(())
}

/// Prints the devices as a table (or JSON lines with `json`).
pub(crate) async fn list(
    store: &dyn RunStore,
    filters: &[Filter],
    json: bool,
) -> anyhow::Result<()> {
    let devices: Vec<Device> = store
        .list_devices()
        .await?
        .into_iter()
        .filter(|d| filters.iter().all(|f| f.matches(d)))
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&devices)?);
        return Ok(());
    }
    // Rows added before `devices add` validated its values may hold control characters.
    let mut table = Table::new(&[
        "id", "name", "host", "port", "platform", "username", "site", "tags",
    ])
    .escaped(terminal::stdout_is_terminal());
    for d in &devices {
        table.row(vec![
            d.id.to_string(),
            d.name.clone(),
            d.host.clone(),
            d.port.to_string(),
            d.platform.clone(),
            d.username.clone(),
            d.site.clone().unwrap_or_default(),
            d.tags.join(","),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

/// A `key=value` device filter: `platform`, `site`, `tag`, `name` (`*` matches any run of
/// characters), `username`, `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    key: FilterKey,
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterKey {
    Platform,
    Site,
    Tag,
    Name,
    Username,
    Host,
}

impl std::str::FromStr for Filter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not key=value (e.g. platform=cisco_ios)"))?;
        let key = match key.trim() {
            "platform" => FilterKey::Platform,
            "site" => FilterKey::Site,
            "tag" => FilterKey::Tag,
            "name" => FilterKey::Name,
            "username" => FilterKey::Username,
            "host" => FilterKey::Host,
            other => {
                return Err(format!(
                    "unknown filter key {other:?} (platform, site, tag, name, username, host)"
                ));
            }
        };
        Ok(Self {
            key,
            value: value.trim().to_owned(),
        })
    }
}

impl Filter {
    /// Whether `d` passes.
    pub(crate) fn matches(&self, d: &Device) -> bool {
        let v = self.value.as_str();
        match self.key {
            FilterKey::Platform => d.platform == v,
            FilterKey::Site => d.site.as_deref() == Some(v),
            FilterKey::Tag => d.tags.iter().any(|t| t == v),
            FilterKey::Name => glob(v, &d.name),
            FilterKey::Username => d.username == v,
            FilterKey::Host => d.host == v,
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, rest) = (parts[0], &parts[1..]);
    let Some(mut tail) = text.strip_prefix(first) else {
        return false;
    };
    let (last, middle) = rest.split_last().map_or(("", &[][..]), |(l, m)| (*l, m));
    for part in middle {
        match tail.find(part) {
            Some(i) => tail = &tail[i + part.len()..],
            None => return false,
        }
    }
    tail.ends_with(last)
}

/// Which devices a bulk runs on.
#[derive(Debug, Clone)]
pub(crate) enum Selection {
    /// Ids or names, in the order given.
    Listed(Vec<String>),
    /// Every device.
    All,
    /// Devices passing every filter.
    Filtered(Vec<Filter>),
}

/// Resolves a selection to device ids. Unknown names are one error listing all of them;
/// unknown numeric ids are left to `Bulk::enqueue`, which lists them the same way.
pub(crate) async fn select(
    store: &dyn RunStore,
    selection: &Selection,
) -> anyhow::Result<Vec<DeviceId>> {
    let devices = store.list_devices().await?;
    let ids: Vec<DeviceId> = match selection {
        Selection::All => devices.iter().map(|d| d.id).collect(),
        Selection::Filtered(filters) => devices
            .iter()
            .filter(|d| filters.iter().all(|f| f.matches(d)))
            .map(|d| d.id)
            .collect(),
        Selection::Listed(items) => {
            let mut ids = Vec::with_capacity(items.len());
            let mut unknown = Vec::new();
            for item in items {
                if let Ok(id) = item.parse::<i64>() {
                    ids.push(DeviceId(id));
                } else if let Some(d) = devices.iter().find(|d| &d.name == item) {
                    ids.push(d.id);
                } else {
                    unknown.push(item.as_str());
                }
            }
            if !unknown.is_empty() {
                bail!("unknown device names: {}", unknown.join(", "));
            }
            ids
        }
    };
    if ids.is_empty() {
        bail!("no device matches the selection");
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("core-*", "core-sw-01"));
        assert!(glob("*-01", "core-sw-01"));
        assert!(glob("c*sw*1", "core-sw-01"));
        assert!(!glob("core-*", "leaf-01"));
        assert!(glob("r1", "r1"));
        assert!(!glob("r1", "r10"));
    }

    #[test]
    fn filters_parse() {
        assert!("platform=cisco_ios".parse::<Filter>().is_ok());
        assert!("colour=red".parse::<Filter>().is_err());
        assert!("platform".parse::<Filter>().is_err());
    }
}
