//! Exports of a bulk's results: one row per device as CSV or JSON, or every device's output
//! in one tar archive — written to any [`AsyncWrite`] as they are read, so an export of a
//! big bulk streams with bounded memory (output is read chunk by chunk; the rows are read a
//! page of devices at a time; only the tar's `results.csv` is kept until the end, a line per
//! device).
//!
//! A row: `device, device_id, host, platform, status, exit_status, error_kind, error, bytes,
//! truncated, run_id, started_at, finished_at` (`status` is `pending` for a device the bulk
//! has not run yet). Text cells that a spreadsheet would run as a formula (starting with
//! `=`, `+`, `-`, `@`) are written with a leading `'` in CSV.
//!
//! The tar (POSIX ustar) holds `REF/NAME.txt` per device that has a run — its output bytes as
//! stored, stdout and stderr in the order they came — and `REF/results.csv` last. `NAME` is
//! the device name with every character other than letters, digits, `.`, `_` and `-`
//! replaced by `_` (and `-ID` added if two names end up the same). A run still running is
//! exported as far as it was when the export reached it.
//!
//! ```
//! # use netauto_core::export::ExportFormat;
//! assert_eq!("tar".parse::<ExportFormat>(), Ok(ExportFormat::Tar));
//! assert_eq!(ExportFormat::Csv.content_type(), "text/csv; charset=utf-8");
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::backend::store::RunStore;
use crate::error::Error;
use crate::model::bulk::Bulk;
use crate::model::device::Device;
use crate::model::ids::{DeviceId, RunId};
use crate::model::run::Run;

/// Devices read per page.
const PAGE: usize = 500;

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One row per device, CSV with a header line.
    Csv,
    /// One row per device, a JSON array of objects.
    Json,
    /// Every device's output, and the CSV, in a tar archive.
    Tar,
}

impl ExportFormat {
    /// Every format.
    pub const ALL: [Self; 3] = [Self::Csv, Self::Json, Self::Tar];

    /// The name used in URLs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Tar => "tar",
        }
    }

    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
            Self::Tar => "application/x-tar",
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown export format {s:?} (csv, json or tar)"))
    }
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] Error),
    /// Writing the export failed (the reader went away, the disk is full).
    #[error("writing the export failed: {0}")]
    Write(#[from] std::io::Error),
}

/// One device's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportRow {
    /// The device's name (`device ID` when it was deleted).
    pub device: String,
    /// The device's id.
    pub device_id: DeviceId,
    /// Its host (empty when the device was deleted).
    pub host: String,
    /// Its platform (empty when the device was deleted).
    pub platform: String,
    /// The outcome, or `pending`.
    pub status: String,
    /// The remote exit status.
    pub exit_status: Option<i32>,
    /// Short error kind.
    pub error_kind: Option<String>,
    /// The error message.
    pub error: Option<String>,
    /// Output bytes stored.
    pub bytes: u64,
    /// The output was cut at the cap.
    pub truncated: bool,
    /// The run.
    pub run_id: Option<RunId>,
    /// When the run started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

const HEADER: &str = "device,device_id,host,platform,status,exit_status,error_kind,error,bytes,truncated,run_id,started_at,finished_at\n";

impl ExportRow {
    fn new(bulk: &Bulk, id: DeviceId, device: Option<&Device>, run: Option<&Run>) -> Self {
        let outcome = bulk.outcomes.get(&id);
        let status = match (outcome, run) {
            (Some(o), _) => o.status.as_str().to_owned(),
            (None, Some(r)) => r.status.as_str().to_owned(),
            (None, None) => "pending".to_owned(),
        };
        Self {
            device: device.map_or_else(|| format!("device {id}"), |d| d.name.clone()),
            device_id: id,
            host: device.map(|d| d.host.clone()).unwrap_or_default(),
            platform: device.map(|d| d.platform.clone()).unwrap_or_default(),
            status,
            exit_status: run.and_then(|r| r.exit_status),
            error_kind: outcome
                .and_then(|o| o.error_kind.clone())
                .or_else(|| run.and_then(|r| r.error_kind.clone())),
            error: run.and_then(|r| r.error_message.clone()),
            bytes: run.map_or(0, |r| r.bytes),
            truncated: outcome.is_some_and(|o| o.truncated) || run.is_some_and(|r| r.truncated),
            run_id: run.map(|r| r.id),
            started_at: run.and_then(|r| r.started_at),
            finished_at: run.and_then(|r| r.finished_at),
        }
    }

    /// The row as a CSV line (with its newline).
    pub fn csv_line(&self) -> String {
        let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
        let num = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
        let cells = [
            csv_text(&self.device),
            self.device_id.to_string(),
            csv_text(&self.host),
            csv_text(&self.platform),
            self.status.clone(),
            num(self.exit_status.map(i64::from)),
            csv_text(self.error_kind.as_deref().unwrap_or("")),
            csv_text(self.error.as_deref().unwrap_or("")),
            self.bytes.to_string(),
            self.truncated.to_string(),
            num(self.run_id.map(RunId::get)),
            time(self.started_at),
            time(self.finished_at),
        ];
        let mut line = cells.join(",");
        line.push('\n');
        line
    }
}

/// A text cell: quoted when it holds a comma, quote or line break; a leading `'` when a
/// spreadsheet would take it for a formula.
fn csv_text(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// The rows of `bulk`, a page of devices at a time, in the bulk's device order.
struct Rows<'a> {
    store: &'a dyn RunStore,
    bulk: &'a Bulk,
    devices: HashMap<DeviceId, Device>,
    next: usize,
}

impl<'a> Rows<'a> {
    async fn new(store: &'a dyn RunStore, bulk: &'a Bulk) -> Result<Self, Error> {
        let devices = store
            .list_devices()
            .await?
            .into_iter()
            .map(|d| (d.id, d))
            .collect();
        Ok(Self {
            store,
            bulk,
            devices,
            next: 0,
        })
    }

    /// The next page: rows with their runs, or `None` at the end.
    async fn page(&mut self) -> Result<Option<Vec<(ExportRow, Option<Run>)>>, Error> {
        let ids = &self.bulk.device_ids;
        if self.next >= ids.len() {
            return Ok(None);
        }
        let page = &ids[self.next..(self.next + PAGE).min(ids.len())];
        self.next += page.len();
        let mut runs: HashMap<DeviceId, Run> = HashMap::new();
        for run in self.store.bulk_runs(&self.bulk.bulk_ref, page).await? {
            // The outcome's run; else the device's latest (a run still going).
            let wanted = self
                .bulk
                .outcomes
                .get(&run.device_id)
                .and_then(|o| o.run_id);
            let keep = match wanted {
                Some(id) => id == run.id,
                None => runs.get(&run.device_id).is_none_or(|r| r.id < run.id),
            };
            if keep {
                runs.insert(run.device_id, run);
            }
        }
        Ok(Some(
            page.iter()
                .map(|id| {
                    let run = runs.remove(id);
                    let row = ExportRow::new(self.bulk, *id, self.devices.get(id), run.as_ref());
                    (row, run)
                })
                .collect(),
        ))
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exported {
    /// Device rows (or archive members with output).
    pub devices: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Writes `bulk`'s export in `format` to `out` (flushed at the end).
pub async fn export_bulk<W: AsyncWrite + Unpin + Send>(
    store: &dyn RunStore,
    bulk: &Bulk,
    format: ExportFormat,
    out: &mut W,
) -> Result<Exported, ExportError> {
    let mut rows = Rows::new(store, bulk).await?;
    let mut done = Exported::default();
    match format {
        ExportFormat::Csv => {
            write(out, HEADER.as_bytes(), &mut done).await?;
            while let Some(page) = rows.page().await? {
                let mut text = String::new();
                for (row, _) in &page {
                    text.push_str(&row.csv_line());
                }
                write(out, text.as_bytes(), &mut done).await?;
                done.devices += page.len();
            }
        }
        ExportFormat::Json => {
            write(out, b"[", &mut done).await?;
            while let Some(page) = rows.page().await? {
                let mut text = Vec::new();
                for (row, _) in &page {
                    if done.devices > 0 || !text.is_empty() {
                        text.extend_from_slice(b",\n");
                    }
                    serde_json::to_writer(&mut text, row).map_err(Error::from)?;
                }
                write(out, &text, &mut done).await?;
                done.devices += page.len();
            }
            write(out, b"]\n", &mut done).await?;
        }
        ExportFormat::Tar => {
            let dir = bulk.bulk_ref.as_str();
            let mut csv = String::from(HEADER);
            let mut names = HashSet::new();
            let mut members = 0;
            while let Some(page) = rows.page().await? {
                for (row, run) in page {
                    csv.push_str(&row.csv_line());
                    let Some(run) = run else { continue };
                    let name = file_name(&row.device, row.device_id, &mut names);
                    let mtime = run.finished_at.unwrap_or(run.inserted_at);
                    let header = tar_header(&format!("{dir}/{name}.txt"), run.bytes, mtime);
                    write(out, &header, &mut done).await?;
                    copy_output(store, &run, out, &mut done).await?;
                    members += 1;
                }
            }
            let header = tar_header(&format!("{dir}/results.csv"), csv.len() as u64, Utc::now());
            write(out, &header, &mut done).await?;
            write(out, csv.as_bytes(), &mut done).await?;
            write(out, &[0; 512][..padding(csv.len() as u64)], &mut done).await?;
            write(out, &[0; 1024], &mut done).await?;
            done.devices = members;
        }
    }
    out.flush().await?;
    Ok(done)
}

async fn write<W: AsyncWrite + Unpin>(
    out: &mut W,
    bytes: &[u8],
    done: &mut Exported,
) -> std::io::Result<()> {
    out.write_all(bytes).await?;
    done.bytes += bytes.len() as u64;
    Ok(())
}

/// Exactly `run.bytes` of the run's output (zeros when the run was purged meanwhile), and
/// the tar padding.
async fn copy_output<W: AsyncWrite + Unpin>(
    store: &dyn RunStore,
    run: &Run,
    out: &mut W,
    done: &mut Exported,
) -> Result<(), ExportError> {
    let mut left = run.bytes;
    let mut seq = 0;
    while left > 0 {
        let chunks = match store.chunks(run.id, seq, 64).await {
            Ok(c) => c,
            Err(Error::NotFound { .. } | Error::RunGone(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if chunks.is_empty() {
            break;
        }
        for c in &chunks {
            let take = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(c.data.len());
            write(out, &c.data[..take], done).await?;
            left -= take as u64;
            seq = c.seq + 1;
            if left == 0 {
                break;
            }
        }
    }
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(512);
        write(out, &[0; 512][..n], done).await?;
        left -= n as u64;
    }
    write(out, &[0; 512][..padding(run.bytes)], done).await?;
    Ok(())
}

/// Zero bytes after `len` bytes of content to reach a 512-byte boundary.
fn padding(len: u64) -> usize {
    ((512 - len % 512) % 512) as usize
}

/// A safe, unique file name for a device.
fn file_name(device: &str, id: DeviceId, seen: &mut HashSet<String>) -> String {
    let mut name: String = device
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '_');
    }
    if !seen.insert(name.clone()) {
        name = format!("{name}-{id}");
        seen.insert(name.clone());
    }
    name
}

/// A POSIX ustar header of a regular file (`path` at most 100 bytes).
fn tar_header(path: &str, size: u64, mtime: DateTime<Utc>) -> [u8; 512] {
    fn octal(field: &mut [u8], value: u64) {
        let digits = field.len() - 1;
        let text = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
        field[digits] = 0;
    }
    let mut h = [0u8; 512];
    let name = path.as_bytes();
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(
        &mut h[136..148],
        u64::try_from(mtime.timestamp()).unwrap_or(0),
    );
    h[148..156].fill(b' ');
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..272].copy_from_slice(b"netauto");
    h[297..304].copy_from_slice(b"netauto");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_text("plain"), "plain");
        assert_eq!(csv_text("a,b"), "\"a,b\"");
        assert_eq!(csv_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_text("-1"), "'-1");
        assert_eq!(csv_text("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn file_names_are_safe_and_unique() {
        let mut seen = HashSet::new();
        let id = DeviceId::from(7);
        assert_eq!(file_name("core-1.lab", id, &mut seen), "core-1.lab");
        assert_eq!(
            file_name("../../etc/passwd", id, &mut seen),
            "_.._.._etc_passwd"
        );
        assert_eq!(file_name("a/b", id, &mut seen), "a_b");
        assert_eq!(file_name("a:b", id, &mut seen), "a_b-7");
        assert_eq!(file_name("", id, &mut seen), "_");
        assert_eq!(file_name(".hidden", id, &mut seen), "_.hidden");
    }

    #[test]
    fn tar_headers_have_a_valid_checksum_and_size() {
        let h = tar_header("abc/r1.txt", 1234, DateTime::from_timestamp(0, 0).unwrap());
        assert_eq!(&h[..10], b"abc/r1.txt");
        assert_eq!(&h[124..136], b"00000002322\0");
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut blank = h;
        blank[148..156].fill(b' ');
        assert_eq!(stored, blank.iter().map(|&b| u32::from(b)).sum::<u32>());
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
    }
}
