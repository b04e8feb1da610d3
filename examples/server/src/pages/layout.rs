//! The page shell, the login page and error pages.

use maud::{DOCTYPE, Markup, html};

use netauto_core::Role;

use crate::auth::CurrentUser;

/// Which top-level section a page belongs to (highlighted in the navigation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Devices,
    Bulks,
    Runs,
    Search,
    Queues,
    Tokens,
    Retention,
    Users,
    Webhooks,
    Audit,
}

/// A full page for a logged-in user.
pub(crate) fn page(
    title: &str,
    section: Section,
    user: &CurrentUser,
    flash: Option<&str>,
    body: Markup,
) -> Markup {
    let nav = |s: Section, href: &str, label: &str| {
        html! { a href=(href) class=[(s == section).then_some("active")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · netauto" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/devices" { "netauto" }
                    nav {
                        (nav(Section::Devices, "/devices", "Devices"))
                        (nav(Section::Bulks, "/bulks", "Bulks"))
                        (nav(Section::Search, "/search", "Search"))
                        (nav(Section::Queues, "/queues", "Queues"))
                        (nav(Section::Retention, "/retention", "Retention"))
                        (nav(Section::Tokens, "/tokens", "API tokens"))
                        @if user.role >= Role::Admin {
                            (nav(Section::Users, "/users", "Users"))
                            (nav(Section::Webhooks, "/webhooks", "Webhooks"))
                            (nav(Section::Audit, "/audit", "Audit"))
                        }
                    }
                    div.user {
                        span.who { (user.name) }
                        span.role.muted { (user.role.as_str()) }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(user.csrf);
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    @if let Some(message) = flash {
                        div.flash role="status" { (message) }
                    }
                    (body)
                }
            }
        }
    }
}

/// The login page, with an error when the last attempt failed.
pub(crate) fn login(csrf: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in · netauto" }
                link rel="stylesheet" href="/assets/app.css";
            }
            body.login {
                form.card.login-card method="post" action="/login" {
                    h1 { "netauto" }
                    p.muted { "Run commands on your network devices." }
                    @if let Some(e) = error {
                        p.error role="alert" { (e) }
                    }
                    input type="hidden" name="csrf" value=(csrf);
                    label for="username" { "User name" }
                    input #username name="username" type="text" autocomplete="username" required autofocus;
                    label for="password" { "Password" }
                    input #password name="password" type="password" autocomplete="current-password" required;
                    button.primary type="submit" { "Log in" }
                }
            }
        }
    }
}

/// A minimal error page (no user needed).
pub(crate) fn error_page(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · netauto" }
                link rel="stylesheet" href="/assets/app.css";
            }
            body {
                main.narrow {
                    h1 { (title) }
                    p { (message) }
                    p { a href="/devices" { "Back to the devices" } }
                }
            }
        }
    }
}
