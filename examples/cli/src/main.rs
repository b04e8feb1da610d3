//! `netauto`: the command line of netauto — migrate the database, manage devices, start and
//! follow bulk runs, read run output, run worker nodes, and plan or run retention purges.
//!
//! See `examples/cli/README.md` for every command, flag and environment variable.

mod bulk;
mod devices;
mod platforms;
mod retention;
mod search;
mod ssh;
mod table;
mod terminal;
mod worker;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use netauto_cli::inventory::Format;
use netauto_core::runtime::QueueLimits;
use netauto_core::{BulkRef, LimitOverrides, NewDevice, OutputStream, RunId};
use netauto_sqlx::Database;

use crate::devices::{Filter, Selection};
use crate::ssh::SshArgs;

/// The database when neither `--database` nor `DATABASE_URL` is given: the server's default.
const DEFAULT_DATABASE_URL: &str = "sqlite://netauto.db";

/// Run commands on many network devices, keep their output, purge it by age and size.
#[derive(Debug, Parser)]
#[command(name = "netauto", version, propagate_version = true)]
struct Cli {
    /// Database URL: sqlite://FILE or postgres://USER:PASSWORD@HOST/DB.
    /// [default: sqlite://netauto.db, the server's default]
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
    /// Print the cause chain of errors and debug logs.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or upgrade the database schema.
    Migrate,
    /// Add, import and list devices.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Start and inspect bulk runs (one command on many devices).
    #[command(subcommand)]
    Bulk(BulkCommand),
    /// Inspect single runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Run jobs (bulk runs, retention cron) until SIGINT/SIGTERM. Run any number against one
    /// PostgreSQL database.
    Worker {
        /// Per-queue concurrency of this node [default: NETAUTO_QUEUES, else
        /// bulk=5,default=10,retention=5].
        #[arg(long, value_name = "QUEUE=N,…", value_parser = worker::parse_queues)]
        queues: Option<QueueLimits>,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Plan or run retention purges (NET_AUTO_RUN_MAX_DAYS, NET_AUTO_RUN_MAX_BYTES).
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// List and show platform definitions (shipped, and NETAUTO_PLATFORMS_DIR's).
    #[command(subcommand)]
    Platforms(PlatformsCommand),
    /// Find the runs whose stored output contains a text (ignoring case, like `| include`),
    /// newest first, with the matching lines in context (`N:` matching, `N-` context). Exit 0
    /// when something is found, 4 when nothing is.
    Search(SearchArgs),
}

#[derive(Debug, Args)]
struct SearchArgs {
    /// The text (3 characters or more, one line).
    text: String,
    /// Only this device's runs (its name).
    #[arg(long)]
    device: Option<String>,
    /// Only runs on devices of this platform.
    #[arg(long)]
    platform: Option<String>,
    /// Only runs whose command contains this (case-insensitive).
    #[arg(long)]
    command: Option<String>,
    /// Runs started on or after: YYYY-MM-DD (UTC) or an RFC 3339 time.
    #[arg(long, value_parser = netauto_core::BulkQuery::parse_time)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Runs started before: YYYY-MM-DD (UTC) or an RFC 3339 time.
    #[arg(long, value_parser = netauto_core::BulkQuery::parse_time)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// Only runs older than this run id (the next page: printed on stderr when there is one).
    #[arg(long)]
    before: Option<RunId>,
    /// Runs per page (1–200).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Lines shown before and after each matching line.
    #[arg(long, short = 'C', default_value_t = 2)]
    context: usize,
    /// JSON lines (one per run) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum PlatformsCommand {
    /// One line per platform: name, aliases, transport, description, where it is defined.
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A platform's whole definition, as TOML (a starting point for your own).
    Show {
        /// Name or alias.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum DevicesCommand {
    /// Add one device.
    Add {
        /// Unique name.
        name: String,
        /// Host name or address.
        #[arg(long)]
        host: String,
        /// SSH port.
        #[arg(long, default_value_t = 22)]
        port: u16,
        /// Platform (`netauto platforms list`): cisco_ios, arista_eos, juniper_junos, generic, …
        #[arg(long)]
        platform: String,
        /// Login user.
        #[arg(long)]
        username: String,
        /// Credential reference (the secret itself stays with the worker's credentials).
        #[arg(long)]
        credential_ref: Option<String>,
        /// Tags, comma-separated.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Site.
        #[arg(long)]
        site: Option<String>,
        /// Jump host(s): a name from NETAUTO_SSH_JUMP_HOSTS's file or `user@host:port`,
        /// several separated by commas (outermost first); `direct` ignores the site's.
        #[arg(long)]
        jump_host: Option<String>,
    },
    /// Import an inventory (CSV, YAML or JSON). Every row is checked first: one bad row and
    /// nothing is imported.
    Import {
        /// The file.
        file: PathBuf,
        /// The format [default: from the file extension].
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// List devices.
    List {
        /// Only devices matching KEY=VALUE (platform, site, tag, name with `*`, username, host);
        /// repeat to combine.
        #[arg(long, value_name = "KEY=VALUE")]
        filter: Vec<Filter>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BulkCommand {
    /// Run one command on many devices. Prints the bulk reference.
    Run(Box<BulkRunArgs>),
    /// List bulks, newest first: reference, start, status, counters, requester, command.
    List {
        /// Only this requester's.
        #[arg(long)]
        requested_by: Option<String>,
        /// Only running, finished or cancelled ones.
        #[arg(long, value_parser = clap::value_parser!(netauto_core::BulkStatus))]
        status: Option<netauto_core::BulkStatus>,
        /// Only commands containing this text (case-insensitive).
        #[arg(long)]
        command: Option<String>,
        /// Created on or after: YYYY-MM-DD (UTC) or an RFC 3339 time.
        #[arg(long, value_parser = netauto_core::BulkQuery::parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Created before: YYYY-MM-DD (UTC) or an RFC 3339 time.
        #[arg(long, value_parser = netauto_core::BulkQuery::parse_time)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Continue after this cursor (printed on stderr when there are more).
        #[arg(long)]
        after: Option<netauto_core::BulkCursor>,
        /// Bulks per page (1–500).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a bulk again as a new bulk linked to it: on its failed devices (failed, error,
    /// timeout, cancelled), or with --all on all of them. Prints the new reference.
    Rerun {
        /// The bulk to run again.
        bulk_ref: BulkRef,
        /// All its devices, not only the failed ones.
        #[arg(long)]
        all: bool,
        /// Who asks [default: $USER].
        #[arg(long, env = "NETAUTO_REQUESTED_BY")]
        requested_by: Option<String>,
    },
    /// Export a bulk's results: one row per device (name, status, exit, bytes, truncated,
    /// error, …) as CSV or JSON, or every device's output and results.csv as a tar archive.
    /// Streamed: any size of bulk in bounded memory.
    Export {
        /// The bulk reference.
        bulk_ref: BulkRef,
        /// csv, json or tar.
        #[arg(long, default_value = "csv", value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<netauto_core::export::ExportFormat>()))]
        format: netauto_core::export::ExportFormat,
        /// Write to this file instead of stdout (a tar is never written to a terminal).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Show a bulk: counters and one row per device.
    Show {
        /// The bulk reference `bulk run` printed.
        bulk_ref: BulkRef,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a bulk: devices not started are recorded cancelled at once; running sessions
    /// are closed within about a second by whichever node runs them (their output so far is
    /// kept).
    Cancel {
        /// The bulk reference.
        bulk_ref: BulkRef,
        /// Wait until the running devices have stopped, then print the table.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("targets").required(true).multiple(false).args(["devices", "all", "filter"]))]
struct BulkRunArgs {
    /// Device ids or names, comma-separated.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<String>,
    /// Every device.
    #[arg(long)]
    all: bool,
    /// Devices matching KEY=VALUE (platform, site, tag, name with `*`, username, host); repeat
    /// to combine.
    #[arg(long, value_name = "KEY=VALUE")]
    filter: Vec<Filter>,
    /// The command line to run.
    #[arg(long)]
    command: String,
    /// This bulk's deadline per device (connect, login and output included), instead of the
    /// worker's NETAUTO_COMMAND_TIMEOUT: seconds or with a unit (`500ms`, `90s`, `5m`, `2h`).
    #[arg(long, value_name = "DURATION", value_parser = ssh::duration_arg)]
    timeout: Option<std::time::Duration>,
    /// This bulk's output cap per run, instead of the worker's NETAUTO_RUN_MAX_OUTPUT: bytes
    /// or with a KiB/MiB/GiB suffix.
    #[arg(long, value_name = "BYTES", value_parser = ssh::bytes_arg)]
    max_output: Option<u64>,
    /// Type the platform's answers when a device asks a question (`[confirm]`, `(y/n)`);
    /// without it such a device's run ends `failed` (`prompt_unanswered`) at the question.
    #[arg(long)]
    answer_prompts: bool,
    /// Who asks (stored with every run) [default: $USER].
    #[arg(long, env = "NETAUTO_REQUESTED_BY")]
    requested_by: Option<String>,
    /// Follow the bulk with a progress bar and print a per-device table; exit 3 if any device
    /// failed.
    #[arg(long)]
    wait: bool,
    /// With --wait: do not run the jobs in this process; a `netauto worker` must be running.
    #[arg(long, requires = "wait")]
    no_local_worker: bool,
    /// With --wait: bulk jobs run at the same time by the in-process worker.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    local_concurrency: u16,
    #[command(flatten)]
    ssh: SshArgs,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// Print a run's output to stdout (its stderr to stderr) and its status line to stderr.
    /// On a terminal, control characters of the output are shown escaped (`\x1b`); a pipe or
    /// a file gets the bytes as stored.
    Show {
        /// The run id.
        id: RunId,
        /// Write the output's bytes as stored even to a terminal (escape sequences included).
        #[arg(long)]
        raw: bool,
    },
    /// Diff two runs' output (unified, as diff -u): A against B, or against the previous run of
    /// the same command on the same device. Exit 0 when identical, 4 when they differ.
    Diff {
        /// The run.
        a: RunId,
        /// The other run [default: the previous run of the same command on A's device].
        b: Option<RunId>,
        /// Drop the lines the device's platform marks volatile (uptime, clocks) first.
        #[arg(long)]
        ignore_volatile: bool,
    },
    /// Cancel a running run: the node running it closes its session and keeps its output.
    Cancel {
        /// The run id.
        id: RunId,
    },
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// Dry run: what a purge now would delete and why. Deletes nothing.
    Plan {
        /// Machine-readable: run ids, device ids, reasons, bytes.
        #[arg(long)]
        json: bool,
    },
    /// Purge now.
    Run,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let verbose = cli.verbose;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netauto: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            report(&e, verbose);
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: bool) {
    let default = if verbose {
        "info,netauto=debug"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETAUTO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

/// One readable line; with `--verbose`, every cause on its own line.
fn report(e: &anyhow::Error, verbose: bool) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "netauto: {e}");
    if verbose {
        for cause in e.chain().skip(1) {
            let _ = writeln!(err, "  caused by: {cause}");
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let platforms = netauto_core::platform::Platforms::from_env()?;
    if let Command::Platforms(command) = &cli.command {
        match command {
            PlatformsCommand::List { json } => platforms::list(&platforms, *json)?,
            PlatformsCommand::Show { name } => platforms::show(&platforms, name)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    let url = cli
        .database
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let db = Database::connect(&url)
        .await
        .with_context(|| format!("cannot open the database {}", netauto_sqlx::redact(&url)))?;
    if !matches!(cli.command, Command::Migrate) {
        // Every command works on an up-to-date schema; migrating is idempotent.
        db.migrate().await.context("cannot migrate the database")?;
    }
    let store = db.store();
    match cli.command {
        Command::Migrate => {
            db.migrate().await.context("cannot migrate the database")?;
            eprintln!("database {} is up to date", netauto_sqlx::redact(&url));
        }
        Command::Devices(DevicesCommand::Add {
            name,
            host,
            port,
            platform,
            username,
            credential_ref,
            tags,
            site,
            jump_host,
        }) => {
            let mut device = NewDevice::new(name, host, platform, username)
                .with_port(port)
                .with_tags(tags);
            if let Some(c) = credential_ref {
                device = device.with_credential_ref(c);
            }
            if let Some(s) = site {
                device = device.with_site(s);
            }
            if let Some(j) = jump_host {
                device = device.with_jump_host(j);
            }
            devices::add(store.as_ref(), &platforms, device).await?;
        }
        Command::Devices(DevicesCommand::Import { file, format }) => {
            devices::import(store.as_ref(), &platforms, &file, format).await?;
        }
        Command::Devices(DevicesCommand::List { filter, json }) => {
            devices::list(store.as_ref(), &filter, json).await?;
        }
        Command::Bulk(BulkCommand::Run(args)) => {
            let selection = if args.all {
                Selection::All
            } else if !args.filter.is_empty() {
                Selection::Filtered(args.filter)
            } else {
                Selection::Listed(args.devices)
            };
            let requested_by = args
                .requested_by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "cli".to_owned());
            let all_ok = bulk::run(
                &db,
                bulk::RunRequest {
                    selection,
                    command: &args.command,
                    requested_by: &requested_by,
                    wait: args.wait,
                    local_worker: (!args.no_local_worker)
                        .then_some(usize::from(args.local_concurrency)),
                    ssh: &args.ssh,
                    limits: LimitOverrides {
                        timeout_ms: args
                            .timeout
                            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                        max_output: args.max_output,
                        answer_prompts: args.answer_prompts,
                    },
                },
            )
            .await?;
            if !all_ok {
                return Ok(ExitCode::from(bulk::EXIT_DEVICES_FAILED));
            }
        }
        Command::Bulk(BulkCommand::List {
            requested_by,
            status,
            command,
            since,
            until,
            after,
            limit,
            json,
        }) => {
            let query = netauto_core::BulkQuery {
                requested_by,
                status,
                command,
                parent: None,
                since,
                until,
                after,
                limit,
            };
            bulk::list(store.as_ref(), &query, json).await?;
        }
        Command::Bulk(BulkCommand::Rerun {
            bulk_ref,
            all,
            requested_by,
        }) => {
            let requested_by = requested_by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "cli".to_owned());
            let which = if all {
                netauto_core::bulk::Rerun::All
            } else {
                netauto_core::bulk::Rerun::Failed
            };
            let service = netauto_core::bulk::BulkService::new(store.clone(), db.progress());
            let child = service.rerun(&bulk_ref, which, &requested_by).await?;
            println!("{child}");
            eprintln!("bulk {child} runs {bulk_ref} again; a worker runs it (`netauto worker`)");
        }
        Command::Bulk(BulkCommand::Export {
            bulk_ref,
            format,
            output,
        }) => {
            bulk::export(store.as_ref(), &bulk_ref, format, output.as_deref()).await?;
        }
        Command::Bulk(BulkCommand::Show { bulk_ref, json }) => {
            bulk::show(store.as_ref(), &bulk_ref, json).await?;
        }
        Command::Bulk(BulkCommand::Cancel { bulk_ref, wait }) => {
            bulk::cancel(&db, &bulk_ref, wait).await?;
        }
        Command::Search(args) => {
            let mut query = netauto_core::search::SearchQuery::new(args.text)?;
            if let Some(name) = &args.device {
                let devices = store.list_devices().await?;
                let Some(device) = devices.iter().find(|d| d.name == *name) else {
                    anyhow::bail!("no device is named {name:?}");
                };
                query.device = Some(device.id);
            }
            query.platform = args.platform;
            query.command = args.command;
            query.since = args.since;
            query.until = args.until;
            query.before = args.before;
            query.limit = args.limit;
            return search::run(store.as_ref(), &query, args.context, args.json).await;
        }
        Command::Runs(RunsCommand::Diff {
            a,
            b,
            ignore_volatile,
        }) => {
            let store = store.as_ref();
            let (left, right) = match b {
                Some(b) => (a, b),
                None => {
                    let run = store.run(a).await?;
                    match netauto_core::diff::previous_run(store, &run).await? {
                        Some(prev) => (prev.id, a),
                        None => anyhow::bail!(
                            "run {a} has no previous run of {:?} on its device; name the other run",
                            run.command
                        ),
                    }
                }
            };
            let options = netauto_core::diff::DiffOptions {
                ignore_volatile,
                ..Default::default()
            };
            let d = netauto_core::diff::diff_runs(store, &platforms, left, right, options).await?;
            let text = d
                .lines
                .unified(&format!("run {left}"), &format!("run {right}"));
            print!(
                "{}",
                terminal::escape_if(terminal::stdout_is_terminal(), &text)
            );
            if d.truncated {
                eprintln!("only the first 16 MiB of each output were compared");
            }
            if d.ignored_volatile > 0 {
                eprintln!("{} volatile lines ignored", d.ignored_volatile);
            }
            if !d.lines.identical() {
                return Ok(ExitCode::from(4));
            }
        }
        Command::Runs(RunsCommand::Cancel { id }) => {
            let run = store
                .request_run_cancel(id, chrono::Utc::now())
                .await
                .map_err(|e| match e {
                    netauto_core::Error::Conflict(_) => {
                        anyhow::anyhow!("run {id} has already finished")
                    }
                    other => other.into(),
                })?;
            eprintln!(
                "run {} on device {}: cancel requested; the node running it stops it within about a second and keeps its output",
                run.id, run.device_id
            );
        }
        Command::Runs(RunsCommand::Show { id, raw }) => show_run(store.as_ref(), id, raw).await?,
        Command::Worker { queues, ssh } => {
            let queues = match queues {
                Some(q) => q,
                None => QueueLimits::from_env()?,
            };
            worker::run(&db, queues, &ssh).await?;
        }
        Command::Retention(RetentionCommand::Plan { json }) => retention::plan(store, json).await?,
        Command::Retention(RetentionCommand::Run) => retention::run(store).await?,
        Command::Platforms(_) => unreachable!("answered before the database is opened"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `runs show`: the output, page by page, then a status line. The output's bytes go out as
/// stored to a pipe or a file (or with `raw`); to a terminal, escaped (see [`terminal`]). The
/// status line, which may quote a device's error message, is escaped on a terminal.
async fn show_run(store: &dyn netauto_core::RunStore, id: RunId, raw: bool) -> anyhow::Result<()> {
    const PAGE: usize = 256;
    let run = store.run(id).await?;
    let mut out = terminal::DeviceWriter::new(
        std::io::stdout().lock(),
        !raw && terminal::stdout_is_terminal(),
    );
    let mut err =
        terminal::DeviceWriter::new(std::io::stderr(), !raw && terminal::stderr_is_terminal());
    let mut from = 0;
    loop {
        let chunks = store.chunks(id, from, PAGE).await?;
        let Some(last) = chunks.last() else { break };
        from = last.seq + 1;
        for c in &chunks {
            match c.stream {
                OutputStream::Stdout => out.write(&c.data)?,
                OutputStream::Stderr => err.write(&c.data)?,
            }
        }
    }
    out.finish()?;
    err.finish()?;
    drop(out);
    let status = format!(
        "run {} on device {}: {}{} — {:?} by {}, {} bytes{}{}",
        run.id,
        run.device_id,
        run.status,
        run.exit_status
            .map(|c| format!(" (exit {c})"))
            .unwrap_or_default(),
        run.command,
        run.requested_by,
        run.bytes,
        if run.truncated {
            " (truncated at the output cap)"
        } else {
            ""
        },
        run.error_message
            .map(|m| format!("; {m}"))
            .unwrap_or_default()
    );
    eprintln!(
        "{}",
        terminal::escape_if(terminal::stderr_is_terminal(), &status)
    );
    Ok(())
}
