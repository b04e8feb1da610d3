//! `netauto-server`: the example web app.
//!
//! ```text
//! netauto-server [--demo] [--bind ADDR]     serve (DATABASE_URL picks the database)
//! netauto-server hash-password              read a password on stdin, print its argon2 hash
//! netauto-server users list|add|set-role|set-password|remove   accounts in the database
//! ```
//!
//! SIGINT and SIGTERM shut it down gracefully: no new connection, open event streams end,
//! requests in flight get `NETAUTO_SHUTDOWN_GRACE` to finish while the job runner drains its
//! jobs (with its own grace); a second signal exits at once.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use netauto_core::ExecLimits;
use netauto_core::retention::RetentionConfig;
use netauto_core::runtime::{QueueLimits, RunnerConfig};
use netauto_server::serve::serve;
use netauto_server::{App, AppParts, ServeConfig, Users, WebLimits, demo, transport};
use netauto_sqlx::Database;
use tokio::sync::watch;

/// Default database: a SQLite file in the working directory.
const DEFAULT_DATABASE_URL: &str = "sqlite://netauto.db";
/// Database of `--demo` without `DATABASE_URL`, recreated at every start.
const DEMO_DB_FILE: &str = "netauto-demo.db";
/// Default listen address.
const DEFAULT_BIND: &str = "127.0.0.1:3000";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every variable the server reads, for `--help`.
fn env_help() -> String {
    format!(
        "\
env: DATABASE_URL (default {DEFAULT_DATABASE_URL}), NETAUTO_USERS_FILE, NETAUTO_USERS,
     NET_AUTO_RUN_MAX_DAYS, NET_AUTO_RUN_MAX_BYTES, NET_AUTO_RETENTION_CRON, NETAUTO_QUEUES,
     NETAUTO_SSH_CONNECTIONS_PER_SECOND (50 or unlimited), NETAUTO_SSH_MAX_SESSIONS (200),
     NETAUTO_SSH_SESSIONS_PER_ENDPOINT (4) sessions at once per host:port, NETAUTO_DEVICES_PER_JOB (10)
     NETAUTO_COMMAND_TIMEOUT (300) deadline of each device command, a bulk may set its own
     NETAUTO_RUN_MAX_OUTPUT (16MiB) output kept per run; at the cap the session closes
     NETAUTO_SECURE_COOKIES=1 (behind HTTPS)
     NETAUTO_AUDIT_MAX_DAYS (365) audit log kept; older entries go with every retention run

limits (durations: seconds, or 500ms, 90s, 15m, 2h):
     NETAUTO_LOGIN_FREE_FAILURES (5) failed logins per user name / client address before backoff
     NETAUTO_LOGIN_BACKOFF_MAX (15m) longest backoff (1 s, doubling), answered 429 + Retry-After
     NETAUTO_LOGIN_THROTTLE_ENTRIES (10000) user names and addresses remembered
     NETAUTO_LOGIN_CONCURRENCY (2) password verifications at once
     NETAUTO_LOGIN_QUEUE_WAIT (5s) longest wait for a verification slot, then 503
     NETAUTO_SESSION_IDLE (2h), NETAUTO_SESSION_LIFETIME (12h, absolute)
     NETAUTO_MAX_SESSIONS (10000 logged in), NETAUTO_MAX_ANON_SESSIONS (10000 login forms)
     NETAUTO_STREAMS_PER_SESSION (16) open event streams per session, then 429
     NETAUTO_HEADER_TIMEOUT (10s) to send a request head; idle connections close after it
     NETAUTO_MAX_CONNECTIONS (1024) served at once; more wait in the listen backlog
     NETAUTO_SHUTDOWN_GRACE (10s) for requests in flight at SIGINT/SIGTERM"
    )
}

/// The netauto web app: pick devices, run one command on all of them, watch each finish live,
/// read every run's output. DATABASE_URL picks the database.
#[derive(Debug, Parser)]
#[command(name = "netauto-server", version, after_help = env_help())]
struct Cli {
    /// Start simulated SSH devices on 127.0.0.1 and a demo user (printed with its password);
    /// without DATABASE_URL, on a fresh SQLite file netauto-demo.db.
    #[arg(long)]
    demo: bool,
    /// Listen address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_BIND)]
    bind: SocketAddr,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read a password on stdin, print its argon2 hash (for NETAUTO_USERS_FILE or NETAUTO_USERS).
    HashPassword,
    /// Manage the accounts in the database (DATABASE_URL); each change is in the audit log.
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// List the accounts in the database and in the users file, with their role.
    List,
    /// Add an account; its password is read on stdin.
    Add {
        /// Login name.
        name: String,
        /// viewer (read), operator (also run, cancel, re-run bulks) or admin (everything).
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Change an account's role.
    SetRole {
        /// Login name.
        name: String,
        /// viewer, operator or admin.
        role: String,
    },
    /// Change an account's password (read on stdin).
    SetPassword {
        /// Login name.
        name: String,
    },
    /// Remove an account and revoke its API tokens.
    Remove {
        /// Login name.
        name: String,
    },
}

fn password_from_stdin() -> Result<String, BoxError> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.chars().count() < netauto_server::MIN_PASSWORD {
        return Err(format!(
            "the password (on stdin) needs at least {} characters",
            netauto_server::MIN_PASSWORD
        )
        .into());
    }
    Ok(password)
}

/// `netauto-server users …`: on the database of DATABASE_URL (migrated first).
async fn users_command(command: UsersCommand) -> Result<(), BoxError> {
    use netauto_core::{NewAuditEvent, NewUser, Role, check_user_name};
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let db = Database::connect(&url).await?;
    db.migrate().await?;
    let store = db.store();
    let file = Users::from_env()?;
    let now = chrono::Utc::now;
    let in_file = |name: &str| -> Result<(), BoxError> {
        match file.role(name) {
            Some(_) => Err(format!(
                "{name} is in the users file (NETAUTO_USERS_FILE / NETAUTO_USERS): change it there"
            )
            .into()),
            None => Ok(()),
        }
    };
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())
    );
    let (action, target, detail) = match command {
        UsersCommand::List => {
            for (name, role) in file.roles() {
                println!("{name}\t{role}\tusers file");
            }
            for u in store.users().await? {
                if file.role(&u.name).is_none() {
                    println!("{}\t{}\tdatabase", u.name, u.role);
                }
            }
            return Ok(());
        }
        UsersCommand::Add { name, role } => {
            let role: Role = role.parse()?;
            check_user_name(&name)?;
            in_file(&name)?;
            let hash = netauto_server::hash_password(&password_from_stdin()?)?;
            let u = store
                .create_user(
                    NewUser {
                        name,
                        role,
                        password_hash: hash,
                    },
                    now(),
                )
                .await?;
            println!("added {} as {}", u.name, u.role);
            ("user.add", u.name, format!("role {}", u.role))
        }
        UsersCommand::SetRole { name, role } => {
            let role: Role = role.parse()?;
            in_file(&name)?;
            let before = store.user(&name).await?.map(|u| u.role);
            let u = store.set_user_role(&name, role, now()).await?;
            println!("{} is now {}", u.name, u.role);
            let from = before.map_or_else(|| "?".to_owned(), |r| r.to_string());
            ("user.role", u.name, format!("{from} → {}", u.role))
        }
        UsersCommand::SetPassword { name } => {
            in_file(&name)?;
            let hash = netauto_server::hash_password(&password_from_stdin()?)?;
            let u = store.set_user_password(&name, &hash, now()).await?;
            println!("password of {} changed", u.name);
            ("user.password", u.name, String::new())
        }
        UsersCommand::Remove { name } => {
            in_file(&name)?;
            let u = store.remove_user(&name, now()).await?;
            println!(
                "removed {} (was {}); their API tokens are revoked",
                u.name, u.role
            );
            (
                "user.remove",
                u.name,
                format!("was {}; API tokens revoked", u.role),
            )
        }
    };
    store
        .record_audit(
            NewAuditEvent::new(actor, action, target).detail(detail),
            now(),
        )
        .await?;
    Ok(())
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
    // Logs at info; every netauto event (debug ones included) also feeds /metrics.
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{Layer as _, filter::LevelFilter};
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_filter(LevelFilter::INFO),
        )
        .with(netauto_server::Metrics::global().layer())
        .init();
    if let Err(e) = run().await {
        eprintln!("netauto-server: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    let args = Cli::parse();
    match args.command {
        Some(Command::HashPassword) => return hash_password_from_stdin(),
        Some(Command::Users(command)) => return users_command(command).await,
        None => {}
    }
    // Read every knob before touching anything: a bad value stops the start with its name.
    let limits = WebLimits::from_env()?;
    let exec_limits = ExecLimits::from_env()?;
    let audit_days = netauto_server::audit_max_days_from_env()?;
    let devices_per_job = netauto_core::bulk::devices_per_job_from_env()?;
    let serve_config = ServeConfig::from_env()?;
    // Installed before serving: a signal that arrives early drains too.
    let mut signals = Signals::new()?;
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
            "demo: {} simulated devices on 127.0.0.1 (one per platform, {} mixed)",
            demo.devices.len(),
            demo::DEMO_DEVICES
        );
        _farm = Some(demo.farm);
        client
    } else {
        transport::from_env()?
    };
    if users.is_empty() && db.store().users().await?.is_empty() {
        return Err("no users: add one with `netauto-server users add NAME --role admin`, or set NETAUTO_USERS_FILE or NETAUTO_USERS (see `netauto-server hash-password`), or run with --demo".into());
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
        exec_limits,
        devices_per_job,
    })?
    .with_limits(&limits)
    .with_audit_max_days(audit_days)
    .with_metrics_token(std::env::var(netauto_server::metrics::METRICS_TOKEN_VAR).ok());
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
    let (down_tx, down_rx) = watch::channel(false);
    let on_signal = app.clone();
    tokio::spawn(async move {
        let name = signals.next().await;
        tracing::info!(
            signal = name,
            "shutting down: ending event streams, draining requests and jobs"
        );
        on_signal.end_streams();
        down_tx.send_replace(true);
        let name = signals.next().await;
        tracing::warn!(signal = name, "second signal: exiting now");
        std::process::exit(130);
    });
    let down = |mut rx: watch::Receiver<bool>| async move {
        // An error means the sender is gone: shut down as well.
        let _ = rx.wait_for(|d| *d).await;
    };
    let runner = async {
        down(down_rx.clone()).await;
        handle.shutdown().await
    };
    let (served, report) = tokio::join!(
        serve(listener, app.router(), &serve_config, down(down_rx.clone())),
        runner
    );
    if let Some(task) = listener_task {
        task.abort();
    }
    tracing::info!(
        connections = served.connections,
        open_at_shutdown = served.open_at_shutdown,
        cut = served.cut,
        "server stopped"
    );
    tracing::info!(
        drained = report.drained,
        released = report.released.len(),
        "runner stopped"
    );
    Ok(())
}

/// SIGINT and SIGTERM.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
}
