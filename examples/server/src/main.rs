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
use netauto_server::{App, AppParts, Users};
use netauto_sqlx::Database;

/// Default database: a SQLite file in the working directory.
const DEFAULT_DATABASE_URL: &str = "sqlite://netauto.db";
/// Default listen address.
const DEFAULT_BIND: &str = "127.0.0.1:3000";

/// Until netauto-ssh (issue 5) lands in the workspace this build has no transport: every run
/// ends `error`/`unsupported` saying so.
#[derive(Debug)]
struct NoTransport;

#[async_trait::async_trait]
impl netauto_core::NetworkClient for NoTransport {
    async fn execute(
        &self,
        _device: &netauto_core::Device,
        _command: &str,
        _options: &netauto_core::ExecOptions,
    ) -> Result<netauto_core::OutputEvents, netauto_core::NetworkError> {
        Err(netauto_core::NetworkError::Unsupported(
            "this build has no SSH transport (netauto-ssh is not in the workspace yet)".into(),
        ))
    }
}

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
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let db = Database::connect(&url).await?;
    db.migrate().await?;
    tracing::info!(database = %netauto_sqlx::redact(&url), "database ready");

    let users = Users::from_env()?;
    if args.demo {
        return Err("--demo needs the device simulator of netauto-ssh (issue 5), which is not in the workspace yet".into());
    }
    if users.is_empty() {
        return Err("no users: set NETAUTO_USERS_FILE or NETAUTO_USERS (see `netauto-server hash-password`), or run with --demo".into());
    }

    let client: Arc<dyn netauto_core::NetworkClient> = Arc::new(NoTransport);
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
