//! The fixture of the `netauto` binary's tests: a temporary directory with a SQLite database,
//! and the binary run in it with nothing from the caller's environment that could change its
//! behaviour.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use netauto_sqlx::Database;

/// A temporary directory with a database in it.
pub(crate) struct Env {
    pub(crate) dir: tempfile::TempDir,
}

impl Env {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn url(&self) -> String {
        format!("sqlite://{}", self.path("netauto.db").display())
    }

    /// The binary with this database and nothing from the caller's environment that could
    /// change its behaviour.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_netauto"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("DATABASE_URL", self.url())
            .env("HOME", self.dir.path())
            .env("USER", "tester");
        for var in [
            "NET_AUTO_RUN_MAX_DAYS",
            "NET_AUTO_RUN_MAX_BYTES",
            "NET_AUTO_RETENTION_CRON",
            "NET_AUTO_QUEUES",
            "NETAUTO_QUEUES",
            "NETAUTO_SSH_HOST_KEYS",
            "NETAUTO_SSH_KNOWN_HOSTS",
            "NETAUTO_SSH_CREDENTIALS",
            "NETAUTO_SSH_JUMP_HOSTS",
            "NETAUTO_COMMAND_TIMEOUT",
            "NETAUTO_RUN_MAX_OUTPUT",
            "NETAUTO_SSH_CONNECTIONS_PER_SECOND",
            "NETAUTO_SSH_MAX_SESSIONS",
            "NETAUTO_SSH_SESSIONS_PER_ENDPOINT",
            "NETAUTO_DEVICES_PER_JOB",
            "NETAUTO_REQUESTED_BY",
            "NETAUTO_LOG",
            "NETAUTO_PLATFORMS_DIR",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "netauto {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub(crate) async fn db(&self) -> Database {
        let db = Database::connect(&self.url()).await.unwrap();
        db.migrate().await.unwrap();
        db
    }
}
