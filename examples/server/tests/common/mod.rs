//! Test harness: an app on a private in-memory SQLite database, a logged-in client, and an
//! in-process fake transport.
//!
//! [`fake_client`] is a clearly-labelled test double for handler tests only: it never touches
//! a network. The demo and the browser test use the real SSH simulator where it is available.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

pub mod http;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use netauto_core::retention::RetentionConfig;
use netauto_core::runtime::RunnerConfig;
use netauto_core::testing::{Reply, ScriptedClient, exit, out};
use netauto_core::{DeviceId, NetworkClient, NetworkError, NewDevice, RunStore};
use netauto_server::{App, AppParts, Users, hash_password_with};
use tower::ServiceExt;

pub const USER: &str = "ann";
pub const PASSWORD: &str = "correct horse";

/// Test double transport: echoes `<device>: <command>`; devices named `down-*` fail to connect;
/// commands containing `exit1` end with exit code 1.
pub fn fake_client() -> ScriptedClient {
    ScriptedClient::from_fn(|device, command| {
        if device.name.starts_with("down-") {
            return Reply::Refuse(NetworkError::Connect {
                host: format!("{}:{}", device.host, device.port),
                message: "connection refused".into(),
            });
        }
        let code = if command.contains("exit1") { 1 } else { 0 };
        Reply::Events(vec![
            out(&format!("{}: {}\nline two\n", device.name, command)),
            exit(code),
        ])
    })
}

/// A number from the environment (a test's size knob), or `default` when unset; a value
/// that is not a number stops the test naming it.
pub fn env_number<T: std::str::FromStr>(var: &str, default: T) -> T {
    match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a number")),
        Err(_) => default,
    }
}

pub struct TestApp {
    pub app: App,
    pub router: Router,
    pub store: Arc<dyn RunStore>,
    pub queue: Arc<dyn netauto_core::JobQueue>,
    pub devices: Vec<DeviceId>,
}

pub fn cheap_users() -> Users {
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    Users::new().with_hash(USER, hash_password_with(PASSWORD, params).unwrap())
}

/// An app with devices `r1`, `r2`, `<b>bold</b>` and `down-1`.
pub async fn test_app() -> TestApp {
    test_app_with(Arc::new(fake_client()), netauto_core::ExecLimits::default()).await
}

/// [`test_app`] reaching devices through `client`, under `exec_limits`.
pub async fn test_app_with(
    client: Arc<dyn NetworkClient>,
    exec_limits: netauto_core::ExecLimits,
) -> TestApp {
    test_app_for(cheap_users(), client, exec_limits).await
}

/// [`test_app_with`] with these file users.
pub async fn test_app_for(
    users: Users,
    client: Arc<dyn NetworkClient>,
    exec_limits: netauto_core::ExecLimits,
) -> TestApp {
    let db = netauto_sqlx::Database::connect("sqlite::memory:")
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let store = db.store();
    let mut devices = Vec::new();
    for name in ["r1", "r2", "<b>bold</b>", "down-1"] {
        let d = store
            .create_device(NewDevice::new(name, "127.0.0.1", "cisco_ios", "admin").with_site("lab"))
            .await
            .unwrap();
        devices.push(d.id);
    }
    let runner = RunnerConfig {
        poll_interval: Duration::from_millis(50),
        ..RunnerConfig::default()
    };
    let app = App::new(AppParts {
        store: store.clone(),
        queue: db.queue(),
        progress: db.progress(),
        client,
        retention: RetentionConfig::default(),
        users,
        runner,
        secure_cookies: false,
        exec_limits,
        devices_per_job: netauto_core::bulk::DEFAULT_DEVICE_CONCURRENCY,
    })
    .unwrap();
    TestApp {
        router: app.router(),
        app,
        store,
        queue: db.queue(),
        devices,
    }
}

pub async fn send(router: &Router, req: Request<Body>) -> Response<Body> {
    router.clone().oneshot(req).await.unwrap()
}

pub async fn body_text(res: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 64 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn session_cookie(res: &Response<Body>) -> Option<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("netauto_session="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// The value of the first `name="csrf"` hidden input of a page.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

/// A logged-in browser-like session.
#[derive(Debug, Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

impl Session {
    pub fn get(&self, uri: &str) -> Request<Body> {
        Request::get(uri)
            .header(header::COOKIE, &self.cookie)
            .body(Body::empty())
            .unwrap()
    }

    pub fn post_form(&self, uri: &str, form: &str) -> Request<Body> {
        Request::post(uri)
            .header(header::COOKIE, &self.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned()))
            .unwrap()
    }

    pub fn post_json(&self, uri: &str, json: &str, csrf: Option<&str>) -> Request<Body> {
        let mut b = Request::post(uri)
            .header(header::COOKIE, &self.cookie)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(c) = csrf {
            b = b.header("x-csrf-token", c);
        }
        b.body(Body::from(json.to_owned())).unwrap()
    }
}

/// Anonymous session with the login form's CSRF token.
pub async fn login_form(router: &Router) -> Session {
    let res = send(router, Request::get("/login").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = session_cookie(&res).expect("a session cookie");
    let csrf = csrf_of(&body_text(res).await);
    Session { cookie, csrf }
}

pub async fn login(router: &Router) -> Session {
    login_as(router, USER, PASSWORD).await
}

/// A cheap argon2 hash of `password` (tests only).
pub fn cheap_hash(password: &str) -> String {
    hash_password_with(password, argon2::Params::new(8, 1, 1, None).unwrap()).unwrap()
}

/// Adds `name` with `role` to the database (password `password`).
pub async fn add_user(
    store: &Arc<dyn RunStore>,
    name: &str,
    role: netauto_core::Role,
    password: &str,
) {
    store
        .create_user(
            netauto_core::NewUser {
                name: name.into(),
                role,
                password_hash: cheap_hash(password),
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
}

/// Logs `user` in (a password without `&`, `+` or `%`).
pub async fn login_as(router: &Router, user: &str, password: &str) -> Session {
    let anon = login_form(router).await;
    let form = format!(
        "username={user}&password={}&csrf={}",
        password.replace(' ', "+"),
        anon.csrf
    );
    let res = send(router, anon.post_form("/login", &form)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "login");
    let cookie = session_cookie(&res).expect("a fresh session cookie");
    assert_ne!(cookie, anon.cookie, "the session is rotated at login");
    let mut s = Session {
        cookie,
        csrf: String::new(),
    };
    let page = body_text(send(router, s.get("/devices")).await).await;
    s.csrf = csrf_of(&page);
    s
}

pub fn ids_form(ids: &[DeviceId]) -> String {
    ids.iter().map(|d| format!("&device_id={d}")).collect()
}

/// Waits until the bulk has finished (the runner must be started).
pub async fn wait_bulk(
    store: &Arc<dyn RunStore>,
    bulk_ref: &netauto_core::BulkRef,
) -> netauto_core::Bulk {
    for _ in 0..200 {
        let b = store.bulk(bulk_ref).await.unwrap();
        if b.finished_at.is_some() {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("bulk did not finish");
}
