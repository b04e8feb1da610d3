//! [`Platforms`]: the shipped definitions plus the operator's own, by name and alias.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::platform::builtin::BUILTIN;
use crate::platform::definition::{DefinitionError, Platform};

/// Directory of the operator's own definitions (`*.toml`), read after the shipped ones: a
/// file whose `name` is a shipped platform replaces it.
pub const PLATFORMS_DIR_VAR: &str = "NETAUTO_PLATFORMS_DIR";

/// The platform used for devices whose platform is unknown to the registry (devices stored
/// before platforms were checked): one exec channel per command.
pub const GENERIC: &str = "generic";

/// A platform name that is not known, with the names that are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown platform {name:?}; known platforms: {}", known.join(", "))]
pub struct UnknownPlatform {
    /// The name asked for.
    pub name: String,
    /// Every known name (not the aliases), sorted.
    pub known: Vec<String>,
}

/// Why the definitions could not be loaded: every problem found, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} platform definition problem(s):\n  {}", problems.len(), problems.join("\n  "))]
pub struct LoadError {
    /// One line per problem, naming the file.
    pub problems: Vec<String>,
}

/// Platform definitions by name and alias.
#[derive(Debug, Clone)]
pub struct Platforms {
    by_name: BTreeMap<String, Arc<Platform>>,
    /// Alias → name.
    aliases: BTreeMap<String, String>,
    /// Where each platform came from (`builtin`, a file path).
    origins: BTreeMap<String, String>,
}

impl Default for Platforms {
    /// The shipped definitions.
    fn default() -> Self {
        Self::builtin()
    }
}

impl Platforms {
    /// The shipped definitions (compiled into the binary; parsed once per process).
    pub fn builtin() -> Self {
        static BUILTIN_SET: std::sync::OnceLock<Platforms> = std::sync::OnceLock::new();
        BUILTIN_SET.get_or_init(Self::parse_builtin).clone()
    }

    fn parse_builtin() -> Self {
        let mut platforms = Self::empty();
        for (file, text) in BUILTIN {
            match Platform::from_toml(&format!("builtin {file}"), text) {
                Ok(p) => {
                    if let Err(e) = platforms.insert(p, "builtin") {
                        unreachable!("shipped definitions do not clash: {e}");
                    }
                }
                Err(e) => unreachable!("shipped definitions are valid (tested): {e}"),
            }
        }
        platforms
    }

    /// No definitions at all.
    pub fn empty() -> Self {
        Self {
            by_name: BTreeMap::new(),
            aliases: BTreeMap::new(),
            origins: BTreeMap::new(),
        }
    }

    /// The shipped definitions, then `NETAUTO_PLATFORMS_DIR`'s when it is set.
    pub fn from_env() -> Result<Self, LoadError> {
        match std::env::var_os(PLATFORMS_DIR_VAR).filter(|v| !v.is_empty()) {
            Some(dir) => Self::builtin().with_dir(Path::new(&dir)),
            None => Ok(Self::builtin()),
        }
    }

    /// Adds every `*.toml` file of `dir` (sorted by file name), replacing platforms of the
    /// same name. All problems are reported together; nothing is added when there is one.
    pub fn with_dir(mut self, dir: &Path) -> Result<Self, LoadError> {
        let mut problems = Vec::new();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(e) => {
                return Err(LoadError {
                    problems: vec![format!(
                        "{PLATFORMS_DIR_VAR}={}: cannot read the directory: {e}",
                        dir.display()
                    )],
                });
            }
        };
        files.sort();
        let mut loaded = Vec::new();
        for path in files {
            let origin = path.display().to_string();
            match std::fs::read_to_string(&path) {
                Ok(text) => match Platform::from_toml(&origin, &text) {
                    Ok(p) => loaded.push((p, origin)),
                    Err(e) => problems.push(format!("{origin}: {}", e.message)),
                },
                Err(e) => problems.push(format!("{origin}: cannot read: {e}")),
            }
        }
        for (platform, origin) in loaded {
            if let Err(e) = self.insert(platform, &origin) {
                problems.push(format!("{origin}: {e}"));
            }
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(LoadError { problems })
        }
    }

    /// Adds `platform`, replacing one of the same name; `origin` is shown by
    /// [`Self::origin`]. Fails when one of its aliases is another platform's name or alias.
    pub fn insert(&mut self, platform: Platform, origin: &str) -> Result<(), DefinitionError> {
        let clash = |message: String| DefinitionError {
            origin: origin.to_owned(),
            message,
        };
        if let Some(owner) = self.aliases.get(&platform.name) {
            return Err(clash(format!(
                "name {:?} is already an alias of {owner:?}",
                platform.name
            )));
        }
        for alias in &platform.aliases {
            let owner = self.aliases.get(alias).filter(|o| **o != platform.name);
            if let Some(owner) = owner {
                return Err(clash(format!(
                    "alias {alias:?} is already an alias of {owner:?}"
                )));
            }
            if alias != &platform.name && self.by_name.contains_key(alias) {
                return Err(clash(format!("alias {alias:?} is already a platform name")));
            }
        }
        if let Some(old) = self.by_name.get(&platform.name) {
            for alias in &old.aliases {
                self.aliases.remove(alias);
            }
        }
        for alias in &platform.aliases {
            self.aliases.insert(alias.clone(), platform.name.clone());
        }
        self.origins
            .insert(platform.name.clone(), origin.to_owned());
        self.by_name
            .insert(platform.name.clone(), Arc::new(platform));
        Ok(())
    }

    /// The platform named (or aliased) `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Platform>> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.by_name.get(name)
    }

    /// The platform named `name`, or an error listing the known names.
    pub fn require(&self, name: &str) -> Result<&Arc<Platform>, UnknownPlatform> {
        self.get(name).ok_or_else(|| UnknownPlatform {
            name: name.to_owned(),
            known: self.by_name.keys().cloned().collect(),
        })
    }

    /// The platform for `name`, or [`GENERIC`] (or a bare exec platform when even that is
    /// missing) for names the registry does not know.
    pub fn resolve(&self, name: &str) -> Arc<Platform> {
        if let Some(p) = self.get(name).or_else(|| self.get(GENERIC)) {
            return p.clone();
        }
        Arc::new(bare_exec())
    }

    /// The canonical name of `name` (itself, or the platform it is an alias of).
    pub fn canonical<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.get(name).map(|p| p.name.as_str())
    }

    /// Every platform, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Platform>> {
        self.by_name.values()
    }

    /// How many platforms there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Where the platform named `name` was defined (`builtin` or a file path).
    pub fn origin(&self, name: &str) -> Option<&str> {
        let name = self.canonical(name)?;
        self.origins.get(name).map(String::as_str)
    }
}

impl Platforms {
    /// A Markdown table of the platforms: name and aliases, transport, the commands that
    /// turn paging off, and the failure patterns (the README's platform table is this,
    /// checked by a test).
    pub fn markdown_table(&self) -> String {
        let code = |s: &str| format!("`{}`", s.replace('|', "\\|").replace('`', "'"));
        let mut out = String::from(
            "| platform (aliases) | transport | after login (paging off) | failure patterns |\n|---|---|---|---|\n",
        );
        for p in self.iter() {
            let aliases = if p.aliases.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.aliases.join(", "))
            };
            let escalation = p.escalation.as_ref().map_or(String::new(), |e| {
                format!(", escalates with {}", code(&e.command))
            });
            let after: Vec<String> = p.after_login.iter().map(|c| code(c)).collect();
            let failures: Vec<String> = p.failures.iter().map(|f| code(f.as_str())).collect();
            out.push_str(&format!(
                "| `{}`{aliases} | {}{escalation} | {} | {} |\n",
                p.name,
                p.transport.as_str(),
                if after.is_empty() {
                    "—".to_owned()
                } else {
                    after.join(" ")
                },
                if failures.is_empty() {
                    "— (exit status)".to_owned()
                } else {
                    failures.join(" ")
                },
            ));
        }
        out
    }
}

fn bare_exec() -> Platform {
    let text = r#"
name = "generic"
description = "Any device with an SSH exec channel"
transport = "exec"
[persona]
privileged_prompt = "{name}$ "
rejected = "command not found"
"#;
    match Platform::from_toml("fallback", text) {
        Ok(p) => p,
        Err(e) => unreachable!("the fallback definition is valid: {e}"),
    }
}
