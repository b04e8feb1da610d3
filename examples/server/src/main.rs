//! `netauto-server`: the example web app.
//!
//! ```text
//! netauto-server [--demo] [--bind ADDR]     serve (DATABASE_URL picks the database)
//! netauto-server hash-password              read a password on stdin, print its argon2 hash
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use netauto_core::retention::RetentionConfig;
use netauto_core::runner::{QueueLimits, RunnerConfig};
use netauto_server::{App, AppParts, Users, demo, transport};
use netauto_sqlx::Database;

/// Default database: a SQLite file in the working directory.
const DEFAULT_DATABASE_URL: &str = "sqlite://netauto.db";
/// Database of `--demo` without `DATABASE_URL`, recreated at every start.
const DEMO_DB_FILE: &str = "netauto-demo.db";
/// Default listen address.
const DEFAULT_BIND: &str = "127.0.0.1:3000";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    demo: bool,
    bind: SocketAddr,
}

fn usage() -> ! {
    eprintln!(
        "usage: netauto-server [--demo] [--bind ADDR]\n       netauto-server hash-password < password\n\n\
         env: DATABASE_URL (default {DEFAULT_DATABASE_URL}), NETAUTO_USERS_FILE, NETAUTO_USERS,\n     \
         NET_AUTO_RUN_MAX_DAYS, NET_AUTO_RUN_MAX_BYTES, NET_AUTO_RETENTION_CRON, NET_AUTO_QUEUES,\n     \
         NETAUTO_SSH_CONNECTIONS_PER_SECOND, NETAUTO_SSH_MAX_SESSIONS,\n     \
         NETAUTO_SECURE_COOKIES=1 (behind HTTPS)"
    );
    std::process::exit(2)
}

fn parse_args() -> Result<Option<Args>, BoxError> {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        demo: false,
        bind: DEFAULT_BIND.parse()?,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "hash-password" => return Ok(None),
            "--demo" => out.demo = true,
            "--bind" => out.bind = args.next().unwrap_or_else(|| usage()).parse()?,
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    Ok(Some(out))
}

fn hash_password_from_stdin() -> Result<(), BoxError> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err("empty password".into());
    }
    println!("{}", netauto_server::hash_password(password)?);
    Ok(())
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .init();
    if let Err(e) = run().await {
        eprintln!("netauto-server: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    let Some(args) = parse_args()? else {
        return hash_password_from_stdin();
    };
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        Err(_) if args.demo => {
            // The simulator's ports change at every start: the demo starts on a fresh file.
            for f in [DEMO_DB_FILE, "netauto-demo.db-wal", "netauto-demo.db-shm"] {
                match std::fs::remove_file(f) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("cannot remove {f}: {e}").into()),
                }
            }
            format!("sqlite://{DEMO_DB_FILE}")
        }
        Err(_) => DEFAULT_DATABASE_URL.to_owned(),
    };
    let db = Database::connect(&url).await?;
    db.migrate().await?;
    tracing::info!(database = %netauto_sqlx::redact(&url), "database ready");

    let mut users = Users::from_env()?;
    let mut demo_login = None;
    let mut _farm = None;
    let client = if args.demo {
        let demo = demo::start(db.store().as_ref(), demo::DEMO_DEVICES).await?;
        let password = demo::random_password().map_err(|e| format!("no OS randomness: {e}"))?;
        users = users.with_password(demo::DEMO_USER, &password)?;
        demo_login = Some(password);
        let client = demo.client.clone();
        println!(
            "demo: {} simulated devices on 127.0.0.1",
            demo.devices.len()
        );
        _farm = Some(demo.farm);
        client
    } else {
        transport::from_env()?
    };
    if users.is_empty() {
        return Err("no users: set NETAUTO_USERS_FILE or NETAUTO_USERS (see `netauto-server hash-password`), or run with --demo".into());
    }

    let runner = RunnerConfig {
        queues: QueueLimits::from_env()?,
        ..RunnerConfig::default()
    };
    let app = App::new(AppParts {
        store: db.store(),
        queue: db.queue(),
        progress: db.progress(),
        client,
        retention: RetentionConfig::from_env()?,
        users,
        runner,
        secure_cookies: std::env::var("NETAUTO_SECURE_COOKIES").is_ok_and(|v| v == "1"),
    })?;
    let handle = app.runner().clone().start();
    let listener_task = match &db {
        Database::Postgres(pg) => {
            Some(pg.wake_on_new_jobs(Arc::new(app.runner().waker().as_ref().clone())))
        }
        _ => None,
    };

    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    let addr = listener.local_addr()?;
    println!("netauto is serving on http://{addr}/");
    if let Some(password) = demo_login {
        println!("demo login: user {} password {password}", demo::DEMO_USER);
    }
    axum::serve(listener, app.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    if let Some(task) = listener_task {
        task.abort();
    }
    let report = handle.shutdown().await;
    tracing::info!(
        drained = report.drained,
        released = report.released.len(),
        "runner stopped"
    );
    Ok(())
}
