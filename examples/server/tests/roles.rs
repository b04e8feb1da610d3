//! Every route × every role: allowed, or `403` from the role check. The expectations are
//! written out here, compared with the router's own table (so a new route without a row here
//! fails), and then each one is tried over HTTP as a viewer, an operator and an admin (pages
//! with a session and its CSRF token, `/api/*` with an API token), and with no login.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::*;
use netauto_core::{NewApiToken, Role};
use netauto_server::Access;
use sha2::{Digest, Sha256};

use Role::{Admin, Operator, Viewer};

/// `(method, path, least role)`; `None`: open to anyone.
const EXPECTED: &[(&str, &str, Option<Role>)] = &[
    ("GET", "/", None),
    ("GET", "/login", None),
    ("GET", "/metrics", None),
    ("GET", "/healthz", None),
    ("GET", "/assets/app.css", None),
    ("GET", "/assets/app.js", None),
    ("GET", "/devices", Some(Viewer)),
    ("GET", "/devices/{id}", Some(Viewer)),
    ("GET", "/bulks", Some(Viewer)),
    ("GET", "/bulk/{bulk_ref}", Some(Viewer)),
    ("GET", "/bulk/{bulk_ref}/events", Some(Viewer)),
    ("GET", "/bulk/{bulk_ref}/fleet", Some(Viewer)),
    ("GET", "/bulk/{bulk_ref}/export", Some(Viewer)),
    ("GET", "/runs/{id}", Some(Viewer)),
    ("GET", "/runs/{id}/events", Some(Viewer)),
    ("GET", "/runs/{id}/raw", Some(Viewer)),
    ("GET", "/runs/{id}/diff", Some(Viewer)),
    ("GET", "/runs/{id}/diff/{other}", Some(Viewer)),
    ("GET", "/search", Some(Viewer)),
    ("GET", "/queues", Some(Viewer)),
    ("GET", "/retention", Some(Viewer)),
    ("GET", "/tokens", Some(Viewer)),
    ("POST", "/tokens", Some(Viewer)),
    ("POST", "/tokens/{id}/revoke", Some(Viewer)),
    ("GET", "/api/devices", Some(Viewer)),
    ("GET", "/api/bulks", Some(Viewer)),
    ("GET", "/api/bulk/{bulk_ref}", Some(Viewer)),
    ("GET", "/api/bulk/{bulk_ref}/fleet", Some(Viewer)),
    ("GET", "/api/bulk/{bulk_ref}/export", Some(Viewer)),
    ("GET", "/api/search", Some(Viewer)),
    ("GET", "/api/queues", Some(Viewer)),
    ("GET", "/api/tokens", Some(Viewer)),
    ("GET", "/api/runs/{id}", Some(Viewer)),
    ("GET", "/api/runs/{id}/diff", Some(Viewer)),
    ("GET", "/api/runs/{id}/diff/{other}", Some(Viewer)),
    ("POST", "/bulk", Some(Operator)),
    ("POST", "/bulk/{bulk_ref}/cancel", Some(Operator)),
    ("POST", "/bulk/{bulk_ref}/rerun", Some(Operator)),
    ("POST", "/runs/{id}/cancel", Some(Operator)),
    ("POST", "/api/bulk", Some(Operator)),
    ("POST", "/api/bulk/{bulk_ref}/cancel", Some(Operator)),
    ("POST", "/api/bulk/{bulk_ref}/rerun", Some(Operator)),
    ("POST", "/api/runs/{id}/cancel", Some(Operator)),
    ("GET", "/devices/new", Some(Admin)),
    ("POST", "/devices/new", Some(Admin)),
    ("GET", "/devices/import", Some(Admin)),
    ("POST", "/devices/import", Some(Admin)),
    ("POST", "/devices/{id}/edit", Some(Admin)),
    ("POST", "/queues/{queue}/{action}", Some(Admin)),
    ("POST", "/jobs/{id}/{action}", Some(Admin)),
    ("POST", "/api/queues/{queue}/{action}", Some(Admin)),
    ("POST", "/api/jobs/{id}/{action}", Some(Admin)),
    ("POST", "/retention/run", Some(Admin)),
    ("GET", "/users", Some(Admin)),
    ("POST", "/users", Some(Admin)),
    ("POST", "/users/{name}/role", Some(Admin)),
    ("GET", "/api/users", Some(Admin)),
    ("GET", "/webhooks", Some(Admin)),
    ("POST", "/webhooks", Some(Admin)),
    ("POST", "/webhooks/{id}/delete", Some(Admin)),
    ("GET", "/api/webhooks", Some(Admin)),
    ("GET", "/audit", Some(Admin)),
    ("GET", "/api/audit", Some(Admin)),
    // Destructive ones last: what follows them may find their target gone (404 still
    // says the role check let the request through).
    ("POST", "/users/{name}/remove", Some(Admin)),
    ("POST", "/devices/{id}/delete", Some(Admin)),
    ("POST", "/logout", Some(Viewer)),
];

const PASSWORD: &str = "role test pw";

struct Caller {
    role: Role,
    session: Session,
    token: String,
}

fn hex_sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn every_route_allows_exactly_the_roles_it_should() {
    let t = test_app().await;
    // The expectations cover the router's table exactly.
    let table: BTreeMap<&str, Access> = t.app.route_access().into_iter().collect();
    let mut expected: BTreeMap<&str, Access> = BTreeMap::new();
    for (_, path, least) in EXPECTED {
        let access = least.map_or(Access::Open, Access::Least);
        if let Some(other) = expected.insert(path, access) {
            assert_eq!(other, access, "{path}: one rule per path");
        }
    }
    assert_eq!(
        expected, table,
        "the router's rules differ from this test's table"
    );

    // Something for every path parameter to point at.
    let handle = t.app.runner().clone().start();
    let admin = login(&t.router).await;
    let res = send(
        &t.router,
        admin.post_form(
            "/bulk",
            &format!(
                "csrf={}&command=show+clock{}",
                admin.csrf,
                ids_form(&t.devices[..1])
            ),
        ),
    )
    .await;
    let location = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let bulk_ref: netauto_core::BulkRef = location.trim_start_matches("/bulk/").parse().unwrap();
    let bulk = wait_bulk(&t.store, &bulk_ref).await;
    handle.shutdown().await;
    let run_id = bulk.outcomes.values().next().unwrap().run_id.unwrap();
    let job_id = t.queue.list(&netauto_core::JobFilter::all()).await.unwrap()[0].id;
    add_user(&t.store, "throwaway", Viewer, PASSWORD).await;

    let mut callers = Vec::new();
    for (name, role) in [("vic", Viewer), ("opal", Operator), ("adam", Admin)] {
        add_user(&t.store, name, role, PASSWORD).await;
        let session = login_as(&t.router, name, PASSWORD).await;
        let secret = format!("netauto_test_{name}");
        t.store
            .create_token(
                NewApiToken {
                    user: name.into(),
                    name: "roles".into(),
                    hash: hex_sha256(&secret),
                    expires_at: None,
                },
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        callers.push(Caller {
            role,
            session,
            token: secret,
        });
    }
    // Another user's token: revoking it answers 404 (the role check let it through) and
    // keeps the callers' own tokens working.
    let token_id = t
        .store
        .create_token(
            NewApiToken {
                user: "throwaway".into(),
                name: "other".into(),
                hash: hex_sha256("other"),
                expires_at: None,
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap()
        .id;

    let fill = |path: &str| {
        let action = if path.starts_with("/jobs") || path.starts_with("/api/jobs") {
            "retry"
        } else {
            "resume"
        };
        let id = if path.contains("/devices/") {
            t.devices[1].to_string()
        } else if path.contains("/jobs/") {
            job_id.to_string()
        } else if path.contains("/tokens/") {
            token_id.to_string()
        } else {
            run_id.to_string()
        };
        path.replace("{id}", &id)
            .replace("{other}", &run_id.to_string())
            .replace("{bulk_ref}", &bulk_ref.to_string())
            .replace("{queue}", "bulk")
            .replace("{action}", action)
            .replace("{name}", "throwaway")
    };
    let request = |method: &str, path: &str, caller: Option<&Caller>| {
        let uri = fill(path);
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&uri);
        let api = uri.starts_with("/api/");
        if let Some(c) = caller {
            b = if api {
                b.header(header::AUTHORIZATION, format!("Bearer {}", c.token))
            } else {
                b.header(header::COOKIE, &c.session.cookie)
            };
        }
        let csrf = caller.map(|c| c.session.csrf.clone()).unwrap_or_default();
        let body = match (method, api) {
            ("GET", _) => Body::empty(),
            (_, true) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(format!(
                    r#"{{"device_ids":[{}],"command":"show version","devices":"all"}}"#,
                    t.devices[0]
                ))
            }
            (_, false) => {
                b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(format!(
                    "csrf={csrf}&command=show+version&device_id={}&devices=all&confirm=yes\
                     &name=added-by-test&password=long+enough+pw&role=viewer\
                     &host=10.0.0.9&port=22&platform=cisco_ios&username=u",
                    t.devices[0]
                ))
            }
        };
        b.body(body).unwrap()
    };

    let mut failures = Vec::new();
    for (method, path, least) in EXPECTED {
        // No login: open routes answer, the rest ask for one.
        let res = send(&t.router, request(method, path, None)).await;
        let status = res.status();
        match least {
            None => {
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    failures.push(format!("{method} {path} anonymous: {status}"));
                }
            }
            Some(_) => {
                let to_login = res
                    .headers()
                    .get(header::LOCATION)
                    .is_some_and(|l| l == "/login");
                if status != StatusCode::UNAUTHORIZED && !to_login {
                    failures.push(format!("{method} {path} anonymous: {status}"));
                }
            }
        }
        let Some(least) = least else { continue };
        for c in &callers {
            let res = send(&t.router, request(method, path, Some(c))).await;
            let status = res.status();
            let allowed = c.role >= *least;
            if allowed {
                // Logging out sends the browser to /login, as a missing login does.
                let to_login = *path != "/logout"
                    && res
                        .headers()
                        .get(header::LOCATION)
                        .is_some_and(|l| l == "/login");
                if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED || to_login
                {
                    failures.push(format!(
                        "{method} {path} as {}: {status} {}",
                        c.role,
                        body_text(res).await.chars().take(200).collect::<String>()
                    ));
                }
            } else {
                let body = body_text(res).await;
                if status != StatusCode::FORBIDDEN
                    || !body.contains(&format!("needs the {least} role"))
                {
                    failures.push(format!(
                        "{method} {path} as {}: {status}, not refused",
                        c.role
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_role_change_or_removal_takes_effect_at_the_next_request() {
    let t = test_app().await;
    add_user(&t.store, "opal", Operator, PASSWORD).await;
    let s = login_as(&t.router, "opal", PASSWORD).await;
    let page = body_text(send(&t.router, s.get("/devices")).await).await;
    assert!(
        !page.contains("href=\"/audit\""),
        "no admin links for an operator"
    );
    assert_eq!(
        send(&t.router, s.get("/audit")).await.status(),
        StatusCode::FORBIDDEN
    );
    // An admin promotes them on /users.
    let admin = login(&t.router).await;
    let res = send(
        &t.router,
        admin.post_form(
            "/users/opal/role",
            &format!("csrf={}&role=admin", admin.csrf),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        send(&t.router, s.get("/audit")).await.status(),
        StatusCode::OK
    );
    // Removed: the session ends at its next request.
    let res = send(
        &t.router,
        admin.post_form("/users/opal/remove", &format!("csrf={}", admin.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = send(&t.router, s.get("/devices")).await;
    assert_eq!(res.headers()[header::LOCATION], "/login");
    // The audit log has the two changes, by ann, with no password in it.
    let audit = t
        .store
        .audit_events(&netauto_core::AuditQuery {
            action: Some("user".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let seen: Vec<_> = audit
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        seen,
        [("ann", "user.remove", "opal"), ("ann", "user.role", "opal")]
    );
    assert_eq!(audit[1].detail, "operator → admin");
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_or_removed() {
    let t = test_app_with_only_database_users().await;
    let admin = login_as(&t.router, "root", PASSWORD).await;
    for (path, form) in [
        ("/users/root/role", "role=viewer"),
        ("/users/root/remove", ""),
    ] {
        let res = send(
            &t.router,
            admin.post_form(path, &format!("csrf={}&{form}", admin.csrf)),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert!(body_text(res).await.contains("the last admin"));
    }
    assert_eq!(
        t.store.user("root").await.unwrap().map(|u| u.role),
        Some(Admin)
    );
}

/// An app whose only account is the database admin `root` (no users file).
async fn test_app_with_only_database_users() -> TestApp {
    let t = test_app_for(
        netauto_server::Users::new(),
        std::sync::Arc::new(fake_client()),
        netauto_core::ExecLimits::default(),
    )
    .await;
    add_user(&t.store, "root", Admin, PASSWORD).await;
    t
}

#[tokio::test]
async fn logins_and_failed_logins_are_audited_without_the_password() {
    let t = test_app().await;
    add_user(&t.store, "vic", Viewer, PASSWORD).await;
    let anon = login_form(&t.router).await;
    let res = send(
        &t.router,
        anon.post_form(
            "/login",
            &format!("username=vic&password=hunter2-wrong&csrf={}", anon.csrf),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let vic = login_as(&t.router, "vic", PASSWORD).await;
    let page = body_text(send(&t.router, vic.get("/devices")).await).await;
    assert!(
        !page.contains("id=\"open-bulk\"") && !page.contains("id=\"add-device\""),
        "a viewer is not offered what they may not do"
    );
    let res = send(
        &t.router,
        vic.post_form("/logout", &format!("csrf={}", vic.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    let admin = login(&t.router).await;
    let res = send(&t.router, admin.get("/api/audit?actor=vic")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
    let actions: Vec<&str> = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["logout", "login", "login.failed"]);
    let page = body_text(send(&t.router, admin.get("/audit")).await).await;
    assert!(page.contains("login.failed") && page.contains("vic"));
    assert!(!page.contains("hunter2") && !json.to_string().contains("hunter2"));
    assert!(!json.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn users_are_managed_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("netauto-users-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("users.db");
    let _ = std::fs::remove_file(&db);
    let url = format!("sqlite://{}", db.display());
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_netauto-server"))
            .args(args)
            .env("DATABASE_URL", &url)
            .env_remove("NETAUTO_USERS_FILE")
            .env_remove("NETAUTO_USERS")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = run(
        &["users", "add", "ops", "--role", "operator"],
        "a long password\n",
    );
    assert!(ok, "{out}");
    let (ok, out) = run(
        &["users", "add", "bad", "--role", "root"],
        "a long password\n",
    );
    assert!(
        !ok && out.contains("not viewer, operator or admin"),
        "{out}"
    );
    let (ok, out) = run(&["users", "add", "short"], "pw\n");
    assert!(!ok && out.contains("at least 8"), "{out}");
    let (ok, out) = run(&["users", "set-role", "ops", "admin"], "");
    assert!(ok, "{out}");
    let (ok, out) = run(&["users", "list"], "");
    assert!(ok && out.contains("ops\tadmin\tdatabase"), "{out}");
    let (ok, out) = run(&["users", "remove", "nobody"], "");
    assert!(!ok && out.contains("nobody"), "{out}");

    // The server logs the account in, and the audit log has the changes by the CLI.
    let db_handle = netauto_sqlx::Database::connect(&url).await.unwrap();
    let store = db_handle.store();
    let user = store.user("ops").await.unwrap().unwrap();
    assert_eq!(user.role, Admin);
    let audit = store
        .audit_events(&netauto_core::AuditQuery::default())
        .await
        .unwrap();
    let seen: Vec<_> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(seen, ["user.role", "user.add"]);
    assert!(audit.iter().all(|e| e.actor.starts_with("cli:")));
    assert!(!format!("{audit:?}").contains("long password"));
    let (ok, out) = run(&["users", "remove", "ops"], "");
    assert!(ok, "{out}");
    assert!(store.user("ops").await.unwrap().is_none());
    drop(db_handle);
    let _ = std::fs::remove_dir_all(&dir);
}
