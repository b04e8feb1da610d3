//! Command templates: one bulk command rendered per device from its fields and variables.
//!
//! A command holding `{{`, `{%` or `{#` is a template in the syntax of the `minijinja` crate
//! (Jinja2). It sees the device's `name`, `host`, `port`, `platform`, `username`, `site`,
//! `tags` and `vars` (the inventory's per-device variables). An undefined name is an error,
//! never an empty string: [`check_templates`] renders the command for every device of a bulk
//! before anything is enqueued and names every device it fails for; the run stores the
//! rendered command. A rendered command is checked like a typed one, so a variable holding a
//! line break cannot smuggle in a second command.
//!
//! ```
//! use netauto_core::bulk::{is_template, render_command};
//! use netauto_core::{DeviceId, NewDevice};
//!
//! let d = NewDevice::new("edge-1", "10.0.0.1", "cisco_ios", "ops")
//!     .with_var("uplink", "Gi0/1")
//!     .into_device(DeviceId(1));
//! assert!(is_template("show interface {{ vars.uplink }}"));
//! assert_eq!(render_command("show interface {{ vars.uplink }}", &d).unwrap(), "show interface Gi0/1");
//! assert_eq!(render_command("ping {{ host }}", &d).unwrap(), "ping 10.0.0.1");
//! let err = render_command("show interface {{ vars.downlink }}", &d).unwrap_err();
//! assert!(err.contains("downlink"), "{err}");
//! ```

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::bulk::validate_command;
use crate::error::ValidationError;
use crate::model::device::Device;

/// Whether `command` is a template (holds `{{`, `{%` or `{#`).
pub fn is_template(command: &str) -> bool {
    command.contains("{{") || command.contains("{%") || command.contains("{#")
}

#[derive(Serialize)]
struct Context<'a> {
    name: &'a str,
    host: &'a str,
    port: u16,
    platform: &'a str,
    username: &'a str,
    site: Option<&'a str>,
    tags: &'a [String],
    vars: &'a std::collections::BTreeMap<String, String>,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// `template` rendered for `device`, checked as a command; the error says what is wrong
/// (syntax, an undefined variable, a line break in the result).
pub fn render_command(template: &str, device: &Device) -> Result<String, String> {
    render_with(&environment(), template, device)
}

fn render_with(env: &Environment<'_>, template: &str, device: &Device) -> Result<String, String> {
    let context = Context {
        name: &device.name,
        host: &device.host,
        port: device.port,
        platform: &device.platform,
        username: &device.username,
        site: device.site.as_deref(),
        tags: &device.tags,
        vars: &device.vars,
    };
    let rendered = env.render_str(template, context).map_err(|e| {
        match missing_variables(env, template, device) {
            names if !names.is_empty() && e.kind() == minijinja::ErrorKind::UndefinedError => {
                format!("undefined variable {}", names.join(", "))
            }
            _ => describe(&e),
        }
    })?;
    validate_command(&rendered)
        .map(str::to_owned)
        .map_err(|e| format!("the rendered command {rendered:?}: {e}"))
}

/// The names the template uses that `device` does not define (`vars.uplink`, `hostname`).
fn missing_variables(env: &Environment<'_>, template: &str, device: &Device) -> Vec<String> {
    const FIELDS: [&str; 8] = [
        "name", "host", "port", "platform", "username", "site", "tags", "vars",
    ];
    let Ok(parsed) = env.template_from_str(template) else {
        return Vec::new();
    };
    let mut names: Vec<String> = parsed
        .undeclared_variables(true)
        .into_iter()
        .filter(|name| match name.split_once('.') {
            Some(("vars", rest)) => {
                let key = rest.split('.').next().unwrap_or(rest);
                !device.vars.contains_key(key)
            }
            Some((top, _)) => !FIELDS.contains(&top),
            None => !FIELDS.contains(&name.as_str()),
        })
        .collect();
    names.sort();
    names
}

fn describe(e: &minijinja::Error) -> String {
    match e.kind() {
        minijinja::ErrorKind::UndefinedError => {
            let what = e.detail().map_or(String::new(), |d| format!(" ({d})"));
            format!("undefined variable{what}: {e}")
        }
        _ => e.to_string(),
    }
}

/// Renders `template` for every device; all failures, one per device (`name: problem`).
/// At most 50 are listed, then how many more.
pub fn check_templates<'a>(
    template: &str,
    devices: impl IntoIterator<Item = &'a Device>,
) -> Result<(), ValidationError> {
    const SHOWN: usize = 50;
    let env = environment();
    if let Err(e) = env.template_from_str(template) {
        return Err(ValidationError::Template {
            problems: vec![format!("syntax: {}", describe(&e))],
        });
    }
    let mut problems = Vec::new();
    let mut more = 0usize;
    for device in devices {
        if let Err(e) = render_with(&env, template, device) {
            if problems.len() < SHOWN {
                problems.push(format!("{}: {e}", device.name));
            } else {
                more += 1;
            }
        }
    }
    if more > 0 {
        problems.push(format!("and {more} more devices"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ValidationError::Template { problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceId, NewDevice};

    fn device(name: &str, uplink: Option<&str>) -> Device {
        let mut d = NewDevice::new(name, "10.0.0.1", "cisco_ios", "ops").with_site("ams");
        if let Some(u) = uplink {
            d = d.with_var("uplink", u);
        }
        d.into_device(DeviceId(1))
    }

    #[test]
    fn every_device_a_template_fails_for_is_named() {
        let devices = [
            device("r1", Some("Gi0/1")),
            device("r2", None),
            device("r3", None),
        ];
        let err = check_templates("show int {{ vars.uplink }}", &devices).unwrap_err();
        let ValidationError::Template { problems } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("r2: undefined variable"),
            "{problems:?}"
        );
        assert!(problems[1].starts_with("r3: "), "{problems:?}");
        assert!(check_templates("show int {{ vars.uplink }}", &devices[..1]).is_ok());
        assert!(check_templates("show {{ site | upper }} {{ name }}", &devices).is_ok());
    }

    #[test]
    fn syntax_errors_and_injected_line_breaks_are_refused() {
        let d = device("r1", Some("Gi0/1\nreload"));
        let err = check_templates("show {{ vars.uplink", [&d]).unwrap_err();
        assert!(err.to_string().contains("syntax"), "{err}");
        let err = render_command("show int {{ vars.uplink }}", &d).unwrap_err();
        assert!(err.contains("line break"), "{err}");
    }
}
