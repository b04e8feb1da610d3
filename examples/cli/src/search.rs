//! `netauto search`: full-text search over stored output, printed like `grep -n` with
//! context (`:` after a matching line's number, `-` after a context line).

use std::io::Write as _;
use std::process::ExitCode;

use netauto_core::RunStore;
use netauto_core::search::{self, ExcerptOptions, SearchQuery};

use crate::terminal;

/// Prints one page; exit 0 when something was found, 4 when nothing was.
pub(crate) async fn run(
    store: &dyn RunStore,
    query: &SearchQuery,
    context: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let options = ExcerptOptions {
        context,
        ..ExcerptOptions::default()
    };
    let page = search::search(store, query, options).await?;
    let names: std::collections::HashMap<_, _> = store
        .list_devices()
        .await?
        .into_iter()
        .map(|d| (d.id, d.name))
        .collect();
    let tty = terminal::stdout_is_terminal();
    let mut out = std::io::stdout().lock();
    for hit in &page.hits {
        let run = &hit.run;
        let device = names
            .get(&run.device_id)
            .cloned()
            .unwrap_or_else(|| format!("device {}", run.device_id));
        if json {
            let line = serde_json::json!({
                "run_id": run.id,
                "device_id": run.device_id,
                "device": device,
                "command": run.command,
                "status": run.status,
                "inserted_at": run.inserted_at,
                "bulk_ref": run.bulk_ref,
                "matches": hit.found.matches,
                "more": hit.found.more,
                "excerpts": hit.found.excerpts,
            });
            writeln!(out, "{line}")?;
            continue;
        }
        writeln!(
            out,
            "== run {} on {} at {} [{}]: {} ({}{} matching line{})",
            run.id,
            terminal::escape_if(tty, &device),
            run.inserted_at.format("%Y-%m-%d %H:%M:%S"),
            run.status,
            terminal::escape_if(tty, &run.command),
            hit.found.matches,
            if hit.found.more { "+" } else { "" },
            if hit.found.matches == 1 { "" } else { "s" },
        )?;
        for (i, excerpt) in hit.found.excerpts.iter().enumerate() {
            if i > 0 {
                writeln!(out, "--")?;
            }
            for line in &excerpt.lines {
                let mark = if line.matched { ':' } else { '-' };
                writeln!(
                    out,
                    "{:>6}{mark} {}",
                    line.number,
                    terminal::escape_if(tty, &line.text)
                )?;
            }
        }
    }
    out.flush()?;
    if let Some(before) = page.next_before {
        eprintln!("more: add --before {before}");
    }
    if page.hits.is_empty() {
        eprintln!("no stored output contains {:?}", query.text);
        return Ok(ExitCode::from(4));
    }
    Ok(ExitCode::SUCCESS)
}
