//! Test helpers: child processes to SIGKILL, the simulator's inventory files, fresh
//! PostgreSQL schemas, seeded run data and end-state snapshots.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use netauto_core::{NewDevice, NewRun, OutputStream, Result, RunFinish, RunStatus, RunStore};
use netauto_ssh::sim::{DeviceFarm, DeviceSpec};

pub use netauto_core::testing::postgres_url as pg_url;

/// Creates a new empty schema on the server at `url` and answers its name.
pub async fn fresh_pg_schema(url: &str) -> String {
    let schema = format!("rel_{}_{:08x}", std::process::id(), seed_from_time() as u32);
    netauto_sqlx::postgres::create_schema(url, &schema)
        .await
        .expect("create the test schema");
    schema
}

/// A seed: `RELIABILITY_SEED` when set (to replay a failure), else from the clock.
pub fn seed() -> u64 {
    std::env::var("RELIABILITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(seed_from_time)
}

fn seed_from_time() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
}

/// A small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// A child process whose stdout lines are collected as they arrive. Killed when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl Proc {
    /// Starts `bin` with `args`; stderr goes to the test's stderr.
    pub fn spawn(name: &str, bin: &str, args: &[String]) -> std::io::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        Self::spawn_command(name, cmd)
    }

    /// Starts a prepared command (its own environment, working directory…); stdin is null,
    /// stdout collected, stderr goes to the test's stderr.
    pub fn spawn_command(name: &str, mut cmd: Command) -> std::io::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
        Ok(Self {
            child,
            lines,
            name: name.to_owned(),
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stdout lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Lines starting with `prefix` so far.
    pub fn count(&self, prefix: &str) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// Waits until `pred` holds for the lines (true) or `timeout` passes or the process exits
    /// (false).
    pub async fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&self.lines()) {
                return true;
            }
            if tokio::time::Instant::now() > deadline || self.exited() {
                // One last look: the reader thread may lag the exit a little.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return pred(&self.lines());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `timeout` for the process to exit by itself; answers whether it exited
    /// with status 0 (SIGKILLed after the timeout).
    pub async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread drain the pipe.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill9();
        false
    }

    /// Peak resident set size so far, in KiB (Linux `VmHWM`), while it runs.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(self.pid())
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("[{}] SIGKILLed (pid {})", self.name, self.pid());
    }

    /// SIGTERM (graceful shutdown), then wait up to `timeout` for the exit; SIGKILL after
    /// that. Answers whether it exited by itself with status 0.
    pub async fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        self.wait_exit(timeout).await
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Peak resident set size of a process in KiB (Linux `VmHWM`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// Resident set size of a process now, in KiB (Linux `VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `n` well-behaved simulated linux devices (`dev00000`…) answering `output_bytes` of output
/// after `latency`.
pub fn sim_specs(n: usize, latency: Duration, output_bytes: usize) -> Vec<DeviceSpec> {
    (0..n)
        .map(|i| {
            let mut s = DeviceSpec::new(format!("dev{i:05}"), "linux");
            s.latency = latency;
            s.output_bytes = output_bytes;
            s
        })
        .collect()
}

/// Writes the farm's credentials (JSON for `FileCredentials`, mode 600) and known_hosts into
/// `dir`; answers their paths.
pub fn write_farm_files(farm: &DeviceFarm, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let mut creds = serde_json::Map::new();
    for d in farm.devices() {
        let spec = farm.spec(&d.name).expect("spec of a farm device");
        creds.insert(
            d.credential_ref.clone(),
            serde_json::json!({ "password": spec.password }),
        );
    }
    let creds_path = dir.join("credentials.json");
    std::fs::write(
        &creds_path,
        serde_json::to_vec(&creds).map_err(std::io::Error::other)?,
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&creds_path, std::fs::Permissions::from_mode(0o600))?;
    }
    let kh = dir.join("known_hosts");
    farm.write_known_hosts(&kh)?;
    farm.write_inventory(dir.join("inventory.json"))?;
    Ok((creds_path, kh))
}

/// Seeds `devices` devices (`p000`…) with runs of random age (0–60 days before `now`, a few
/// in the future), size and chunking; a few stay `running`. Deterministic for a seed: on a
/// fresh store the same seed gives the same ids.
pub async fn seed_runs(
    store: &dyn RunStore,
    seed: u64,
    devices: usize,
    runs_per_device: usize,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut rng = Rng::new(seed);
    let mut ids = Vec::new();
    for i in 0..devices {
        let d = store
            .create_device(NewDevice::new(
                format!("p{i:03}"),
                "127.0.0.1",
                "linux",
                "ops",
            ))
            .await?;
        ids.push(d.id);
    }
    for _ in 0..runs_per_device {
        for &device_id in &ids {
            // Seconds before now: up to 60 days, 2 % a little in the future.
            let ago = if rng.range(0, 49) == 0 {
                -(rng.range(1, 3600) as i64)
            } else {
                rng.range(0, 60 * 86_400) as i64
            };
            let at = now - TimeDelta::seconds(ago);
            let run = store
                .create_run(
                    NewRun {
                        device_id,
                        command: "show version".to_owned(),
                        requested_by: "seed".to_owned(),
                        bulk_ref: None,
                    },
                    at,
                )
                .await?;
            for _ in 0..rng.range(0, 3) {
                let len = rng.range(1, 4000) as usize;
                let byte = (rng.next_u64() & 0xff) as u8;
                store
                    .append_chunk(run.id, OutputStream::Stdout, &vec![byte; len], at)
                    .await?;
            }
            if rng.range(0, 19) != 0 {
                let status = if rng.range(0, 4) == 0 {
                    RunStatus::Failed
                } else {
                    RunStatus::Ok
                };
                store
                    .finish_run(run.id, RunFinish::new(status), at + TimeDelta::seconds(2))
                    .await?;
            }
        }
    }
    Ok(())
}

/// One run as compared between databases: id, device id, status, bytes, chunk lengths.
pub type RunRow = (i64, i64, String, u64, Vec<usize>);

/// Every run with its chunks' lengths, by id: the end state two purges are compared on.
pub async fn snapshot(store: &dyn RunStore) -> Result<BTreeMap<i64, RunRow>> {
    let mut out = BTreeMap::new();
    for d in store.list_devices().await? {
        for run in store.device_runs(d.id, 1_000_000).await? {
            let chunks = store.chunks(run.id, 0, 1_000_000).await?;
            out.insert(
                run.id.get(),
                (
                    run.id.get(),
                    d.id.get(),
                    run.status.as_str().to_owned(),
                    run.bytes,
                    chunks.iter().map(|c| c.data.len()).collect(),
                ),
            );
        }
    }
    Ok(out)
}
