// netauto example server: progressive enhancement for the devices index, live bulk page and
// run workspace. Everything from the server is inserted as text (textContent), never as HTML.
"use strict";

function $(id) { return document.getElementById(id); }

function setBadge(el, status) {
  el.textContent = "";
  const span = document.createElement("span");
  span.className = "badge status-" + status;
  span.textContent = status;
  el.appendChild(span);
}

function seconds(ms) {
  const s = ms / 1000;
  return s < 60 ? s.toFixed(1) + " s" : Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
}

// ---- devices index: filter, selection, modal ----
function initDevices() {
  const dialog = $("bulk-dialog");
  if (!dialog) return;
  const filter = $("filter");
  const rows = Array.from(document.querySelectorAll("#devices tbody tr"));
  const boxes = Array.from(document.querySelectorAll("input.pick"));
  const all = $("select-all");
  const open = $("open-bulk");

  function refresh() {
    const n = boxes.filter(b => b.checked).length;
    $("selected-count").textContent = n;
    $("dialog-count").textContent = n;
    open.disabled = n === 0;
    const shown = boxes.filter(b => !b.closest("tr").hidden);
    if (all) {
      const picked = shown.filter(b => b.checked).length;
      all.checked = shown.length > 0 && picked === shown.length;
      all.indeterminate = picked > 0 && picked < shown.length;
    }
  }
  const platform = $("platform-filter");
  function applyFilters() {
    const q = filter ? filter.value.trim().toLowerCase() : "";
    const p = platform ? platform.value : "";
    for (const row of rows) {
      row.hidden = (q !== "" && !row.dataset.search.includes(q)) || (p !== "" && row.dataset.platform !== p);
    }
    refresh();
  }
  if (filter) filter.addEventListener("input", applyFilters);
  if (platform) {
    const wanted = new URLSearchParams(location.search).get("platform");
    if (wanted && Array.from(platform.options).some(o => o.value === wanted)) platform.value = wanted;
    platform.addEventListener("change", applyFilters);
  }
  if (all) {
    all.addEventListener("change", () => {
      for (const b of boxes) if (!b.closest("tr").hidden) b.checked = all.checked;
      refresh();
    });
  }
  for (const b of boxes) b.addEventListener("change", refresh);
  open.addEventListener("click", () => { dialog.showModal(); $("command").focus(); });
  $("cancel-bulk").addEventListener("click", () => dialog.close());
  $("bulk-form").addEventListener("submit", () => { $("submit-bulk").disabled = true; });
  applyFilters();
  if (dialog.dataset.open === "true") dialog.showModal();
}

// ---- /bulk/<ref>: snapshot, then live progress ----
function initBulk() {
  const root = $("bulk");
  if (!root) return;
  const done = new Map(); // device id -> final status
  let total = Number($("c-total").textContent);

  function counters(ok, failed, cancelled, pending) {
    $("c-ok").textContent = ok;
    $("c-failed").textContent = failed;
    $("c-cancelled").textContent = cancelled;
    $("c-pending").textContent = pending;
    $("bar").max = Math.max(total, 1);
    $("bar").value = ok + failed + cancelled;
  }
  function recount() {
    let ok = 0, failed = 0, cancelled = 0;
    for (const s of done.values()) {
      if (s === "ok") ok++; else if (s === "cancelled") cancelled++; else failed++;
    }
    counters(ok, failed, cancelled, total - ok - failed - cancelled);
  }
  function cancelling() {
    const form = $("cancel-form");
    if (form) form.remove();
    if (root.dataset.finished !== "true") $("live-state").textContent = "cancelling";
  }
  function apply(d) {
    const row = $("d-" + d.device_id);
    if (!row) return;
    done.set(String(d.device_id), d.status);
    const status = row.querySelector("td.status");
    setBadge(status, d.status);
    if (d.truncated) {
      const t = document.createElement("span");
      t.className = "badge truncated";
      t.textContent = "truncated";
      status.appendChild(document.createTextNode(" "));
      status.appendChild(t);
    }
    const cell = row.querySelector("td.run");
    cell.textContent = "";
    if (d.run_id != null) {
      const a = document.createElement("a");
      a.href = "/runs/" + d.run_id;
      a.textContent = "run #" + d.run_id;
      cell.appendChild(a);
      if (d.error_kind && d.status !== "ok") {
        const k = document.createElement("span");
        k.className = "kind muted";
        k.textContent = d.error_kind;
        cell.appendChild(document.createTextNode(" "));
        cell.appendChild(k);
      }
    } else {
      const s = document.createElement("span");
      s.className = "muted";
      s.textContent = d.error_kind || "—";
      cell.appendChild(s);
    }
  }
  function finish(ok, failed, cancelled, all, ms) {
    const banner = $("summary");
    banner.textContent = "Finished: " + ok + " ok, " + failed + " failed" +
      (cancelled > 0 ? ", " + cancelled + " cancelled" : "") + " of " + all +
      (ms != null ? " in " + seconds(ms) : "") + ".";
    banner.className = "banner " + (failed + cancelled > 0 ? "failed" : "ok");
    banner.hidden = false;
    $("live-state").textContent = "finished";
    const form = $("cancel-form");
    if (form) form.remove();
    const at = $("finished-at");
    if (at.textContent === "—") at.textContent = new Date().toISOString().slice(0, 19).replace("T", " ") + " UTC";
    root.dataset.finished = "true";
  }

  let es = null;
  function connect() {
    es = new EventSource("/bulk/" + root.dataset.ref + "/events");
    es.addEventListener("snapshot", e => {
      const s = JSON.parse(e.data);
      total = s.counters.total;
      for (const d of s.devices) apply(d);
      recount();
      if (s.cancelled) cancelling();
      if (s.finished) {
        finish(s.counters.ok, s.counters.failed, s.counters.cancelled || 0, s.counters.total, s.duration_ms);
        es.close();
      }
    });
    es.addEventListener("progress", e => { apply(JSON.parse(e.data)); recount(); });
    es.addEventListener("summary", e => {
      const s = JSON.parse(e.data);
      finish(s.ok, s.failed, s.cancelled || 0, s.total, s.duration_ms);
      es.close();
    });
    es.onerror = () => {
      es.close();
      if (root.dataset.finished !== "true") setTimeout(connect, 2000);
    };
  }
  if (root.dataset.finished !== "true") connect();
}

// ---- /runs/<id>: tail the output ----
function initRun() {
  const root = $("run");
  if (!root || root.dataset.live !== "true") return;
  const out = $("output");
  let next = Number(root.dataset.nextSeq);

  function connect() {
    const es = new EventSource("/runs/" + root.dataset.run + "/events?from=" + next);
    es.addEventListener("chunk", e => {
      const c = JSON.parse(e.data);
      if (c.seq < next) return;
      next = c.seq + 1;
      const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      if (c.stream === "stderr") {
        const span = document.createElement("span");
        span.className = "stderr";
        span.textContent = c.text;
        out.appendChild(span);
      } else {
        out.appendChild(document.createTextNode(c.text));
      }
      if (atBottom) out.scrollTop = out.scrollHeight;
    });
    es.addEventListener("finished", e => {
      const r = JSON.parse(e.data);
      if (r.tail) out.appendChild(document.createTextNode(r.tail));
      const form = $("cancel-form");
      if (form) form.remove();
      setBadge($("run-status"), r.status);
      $("run-exit").textContent = r.exit_status == null ? "—" : r.exit_status;
      $("run-finished").textContent = r.finished_at ? r.finished_at.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : "—";
      if (r.duration_ms != null) $("run-duration").textContent = seconds(r.duration_ms);
      $("run-bytes").textContent = r.bytes + " B in " + r.chunks + " chunks" + (r.truncated ? " (truncated at the output cap)" : "");
      root.dataset.live = "false";
      es.close();
    });
    es.onerror = () => {
      es.close();
      if (root.dataset.live === "true") setTimeout(connect, 2000);
    };
  }
  connect();
}

document.addEventListener("DOMContentLoaded", () => { initDevices(); initBulk(); initRun(); });
