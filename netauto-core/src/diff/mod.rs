//! Diffs of two runs' output: [`diff_runs`] (any two runs) and [`previous_run`] (the default
//! partner: the previous run of the same command on the same device).
//!
//! Memory is bounded: each side reads at most [`DiffOptions::max_bytes`] of output (16 MiB by
//! default, the default output cap) chunk by chunk; output beyond it is left out and the diff
//! says so (`truncated`). Lines are compared as text (invalid UTF-8 replaced); with
//! `ignore_volatile` the lines the device's platform marks volatile (uptime, clocks, …) are
//! dropped from both sides first. The line diff (Myers, via the `similar` crate) gives up
//! refining after 2 s and reports the rest as replaced, so a pathological pair cannot hang a
//! request.
//!
//! ```
//! use netauto_core::diff::LineDiff;
//!
//! let d = LineDiff::of("a\nb\nc\n", "a\nB\nc\n", 1);
//! assert!(!d.identical());
//! assert_eq!(
//!     d.unified("run 1", "run 2"),
//!     "--- run 1\n+++ run 2\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
//! );
//! ```

use std::time::Duration;

use similar::{ChangeTag, TextDiff};

use crate::backend::store::RunStore;
use crate::error::Result;
use crate::model::ids::RunId;
use crate::model::run::Run;
use crate::platform::Platforms;

/// Options of [`diff_runs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiffOptions {
    /// Drop the platform's volatile lines from both sides before comparing.
    pub ignore_volatile: bool,
    /// Unchanged lines shown around each change.
    pub context: usize,
    /// Output read per side, in bytes.
    pub max_bytes: u64,
}

impl Default for DiffOptions {
    fn default() -> Self {
        Self {
            ignore_volatile: false,
            context: 3,
            max_bytes: 16 << 20,
        }
    }
}

/// One row of a side-by-side view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Row {
    /// The same line on both sides.
    Same {
        /// The line.
        text: String,
    },
    /// Only on the left.
    Removed {
        /// The line.
        text: String,
    },
    /// Only on the right.
    Added {
        /// The line.
        text: String,
    },
    /// Unchanged lines not shown.
    Skipped {
        /// How many.
        lines: usize,
    },
}

/// The line diff of two texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDiff {
    left: String,
    right: String,
    context: usize,
}

impl LineDiff {
    /// `left` against `right`, showing `context` unchanged lines around changes.
    pub fn of(left: impl Into<String>, right: impl Into<String>, context: usize) -> Self {
        Self {
            left: left.into(),
            right: right.into(),
            context,
        }
    }

    fn text_diff(&self) -> TextDiff<'_, '_, '_, str> {
        TextDiff::configure()
            .algorithm(similar::Algorithm::Myers)
            .timeout(Duration::from_secs(2))
            .diff_lines(&self.left, &self.right)
    }

    /// Whether both sides are the same.
    pub fn identical(&self) -> bool {
        self.left == self.right
    }

    /// The unified diff (`---`/`+++` headers, `@@` hunks); empty when identical.
    pub fn unified(&self, left_name: &str, right_name: &str) -> String {
        if self.identical() {
            return String::new();
        }
        self.text_diff()
            .unified_diff()
            .context_radius(self.context)
            .header(left_name, right_name)
            .to_string()
    }

    /// Rows for a side-by-side view: changes with `context` lines around them, the rest
    /// skipped.
    pub fn rows(&self) -> Vec<Row> {
        let diff = self.text_diff();
        let mut rows = Vec::new();
        let mut last_end = 0usize;
        for group in diff.grouped_ops(self.context) {
            let start = group.first().map_or(0, |op| op.old_range().start);
            if start > last_end {
                rows.push(Row::Skipped {
                    lines: start - last_end,
                });
            }
            for op in &group {
                for change in diff.iter_changes(op) {
                    let text = change.value().trim_end_matches('\n').to_owned();
                    rows.push(match change.tag() {
                        ChangeTag::Equal => Row::Same { text },
                        ChangeTag::Delete => Row::Removed { text },
                        ChangeTag::Insert => Row::Added { text },
                    });
                }
                last_end = op.old_range().end;
            }
        }
        let total = self.left.lines().count();
        if total > last_end && !rows.is_empty() {
            rows.push(Row::Skipped {
                lines: total - last_end,
            });
        }
        rows
    }
}

/// Two runs' outputs compared.
#[derive(Debug, Clone)]
pub struct RunDiff {
    /// The left run.
    pub left: Run,
    /// The right run.
    pub right: Run,
    /// The compared texts.
    pub lines: LineDiff,
    /// A side had more output than [`DiffOptions::max_bytes`]: only that much was compared.
    pub truncated: bool,
    /// Volatile lines dropped (both sides together).
    pub ignored_volatile: usize,
}

/// Compares the output of runs `left` and `right` (stdout and stderr as stored, in order).
pub async fn diff_runs(
    store: &dyn RunStore,
    platforms: &Platforms,
    left: RunId,
    right: RunId,
    options: DiffOptions,
) -> Result<RunDiff> {
    let (left, right) = (store.run(left).await?, store.run(right).await?);
    let mut truncated = false;
    let mut ignored = 0;
    let mut texts = Vec::with_capacity(2);
    for run in [&left, &right] {
        let (mut text, cut) = output(store, run.id, options.max_bytes).await?;
        truncated |= cut;
        if options.ignore_volatile {
            let device = store.device(run.device_id).await?;
            let platform = platforms.resolve(&device.platform);
            let before = text.lines().count();
            text = text
                .lines()
                .filter(|l| !platform.is_volatile(l))
                .map(|l| format!("{l}\n"))
                .collect();
            ignored += before - text.lines().count();
        }
        texts.push(text);
    }
    let right_text = texts.pop().unwrap_or_default();
    let left_text = texts.pop().unwrap_or_default();
    Ok(RunDiff {
        left,
        right,
        lines: LineDiff::of(left_text, right_text, options.context),
        truncated,
        ignored_volatile: ignored,
    })
}

/// A run's output as text, at most `max_bytes` of it (and whether there was more).
async fn output(store: &dyn RunStore, run: RunId, max_bytes: u64) -> Result<(String, bool)> {
    let mut bytes = Vec::new();
    let mut next = 0;
    loop {
        let page = store.chunks(run, next, 64).await?;
        let Some(last) = page.last() else {
            break;
        };
        next = last.seq + 1;
        for chunk in page {
            let room = usize::try_from(max_bytes).unwrap_or(usize::MAX) - bytes.len();
            if chunk.data.len() > room {
                bytes.extend_from_slice(&chunk.data[..room]);
                return Ok((String::from_utf8_lossy(&bytes).into_owned(), true));
            }
            bytes.extend_from_slice(&chunk.data);
        }
    }
    Ok((String::from_utf8_lossy(&bytes).into_owned(), false))
}

/// The run before `run` of the same command on the same device (the default partner of a
/// diff), among the device's newest 500 runs.
pub async fn previous_run(store: &dyn RunStore, run: &Run) -> Result<Option<Run>> {
    let runs = store.device_runs(run.device_id, 500).await?;
    Ok(runs
        .into_iter()
        .filter(|r| r.command == run.command && r.id != run.id)
        .find(|r| (r.inserted_at, r.id) < (run.inserted_at, run.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_changes_with_context_and_skip_the_rest() {
        let left: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        let right = left.replace("line 10\n", "line ten\n");
        let rows = LineDiff::of(left, right, 1).rows();
        assert_eq!(
            rows,
            vec![
                Row::Skipped { lines: 8 },
                Row::Same {
                    text: "line 9".into()
                },
                Row::Removed {
                    text: "line 10".into()
                },
                Row::Added {
                    text: "line ten".into()
                },
                Row::Same {
                    text: "line 11".into()
                },
                Row::Skipped { lines: 9 },
            ]
        );
        assert!(LineDiff::of("a\n", "a\n", 3).rows().is_empty());
    }
}

/// Devices of a bulk whose outputs are the same once volatile lines are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetGroup {
    /// The devices and their runs, in the bulk's order.
    pub members: Vec<(crate::model::ids::DeviceId, RunId)>,
    /// The output every member has (volatile lines removed, at most `max_bytes` read).
    pub text: String,
}

/// Groups the devices of `bulk` that have a run by identical output, the platform's volatile
/// lines removed: largest group first (ties: the group whose first device comes first in the
/// bulk). Outputs are read one at a time, each up to `max_bytes`; only one text per group is
/// kept.
pub async fn fleet_groups(
    store: &dyn RunStore,
    platforms: &Platforms,
    bulk: &crate::model::bulk::Bulk,
    max_bytes: u64,
) -> Result<Vec<FleetGroup>> {
    let mut groups: Vec<FleetGroup> = Vec::new();
    // Hash of the text → the groups with that hash (texts compared on a hit).
    let mut index: std::collections::HashMap<u64, Vec<usize>> = std::collections::HashMap::new();
    for device_id in &bulk.device_ids {
        let Some(run_id) = bulk.outcomes.get(device_id).and_then(|o| o.run_id) else {
            continue;
        };
        let platform = match store.device(*device_id).await {
            Ok(device) => platforms.resolve(&device.platform),
            Err(_) => platforms.resolve(crate::platform::GENERIC),
        };
        let (text, _) = output(store, run_id, max_bytes).await?;
        let text: String = text
            .lines()
            .filter(|l| !platform.is_volatile(l))
            .map(|l| format!("{l}\n"))
            .collect();
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut h);
            h.finish()
        };
        let candidates = index.entry(hash).or_default();
        match candidates.iter().find(|&&i| groups[i].text == text) {
            Some(&i) => groups[i].members.push((*device_id, run_id)),
            None => {
                candidates.push(groups.len());
                groups.push(FleetGroup {
                    members: vec![(*device_id, run_id)],
                    text,
                });
            }
        }
    }
    // Stable: equal sizes keep the bulk's order.
    groups.sort_by_key(|g| std::cmp::Reverse(g.members.len()));
    Ok(groups)
}
