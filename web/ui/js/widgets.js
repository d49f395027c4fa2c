// Pieces several pages share: cards and their colours, findings with their evidence,
// meters, lane bars and the build table.
import { esc, fmtBytes, fmtCount, fmtDuration, pct, num, badge, sevClass, when, isSet } from "./format.js";

export function card(label, valueHTML, sub, cls = "", id = "") {
  return `<div class="card ${cls}" ${id ? `id="${id}"` : ""}><div class="label">${esc(label)}</div><div class="value">${valueHTML}</div><div class="sub">${sub || ""}</div></div>`;
}

// meter is a bar of used out of total. Only a meter that measures a limit (memory) is
// coloured by how full it is; a lane whose workers are all busy is doing its job.
export function meter(used, total, { severity = true } = {}) {
  const f = total > 0 ? Math.min(used / total, 1) : 0;
  const cls = !severity ? "" : f > 0.9 ? "crit" : f > 0.7 ? "warn" : "";
  return `<div class="meter ${cls}" title="${pct(f)}"><div style="width:${(f * 100).toFixed(1)}%"></div></div>`;
}

// ---------- evidence ----------

// Labels for evidence keys whose name alone reads badly; every other key is turned into
// words by evidenceLabel, and its unit comes from its suffix.
const EVIDENCE_LABELS = {
  z: "Robust z", robust_z: "Robust z", threshold_z: "Threshold (z)", tau: "Trend (Kendall τ)",
  short_window_tau: "Short-window trend (τ)", tau_vs_yesterday: "Trend vs yesterday (τ)",
  p99_bytes: "p99 size", p999_bytes: "p99.9 size", ratio_to_p999: "Ratio to p99.9",
  oom_kills: "OOM kills", oom_kills_recent: "OOM kills (recent)", oom_kills_before: "OOM kills (before)",
  oom_rate_recent_per_hour: "OOM kill rate (recent)", oom_rate_before_per_hour: "OOM kill rate (before)",
  p99_lag_seconds: "p99 lag", eta_hours: "ETA",
};

const UNIT_SUFFIXES = [
  ["_bytes_per_day", (v) => fmtBytes(v) + "/day"],
  ["_per_hour", (v) => fmtCount(v) + "/h"],
  ["_bytes", fmtBytes],
  ["_seconds_ago", (v) => fmtDuration(v) + " ago"],
  ["_seconds", fmtDuration],
  ["_hours", (v) => fmtDuration(v * 3600)],
  ["_ratio", (v) => (v <= 1 ? pct(v) : fmtCount(v) + "×")],
];

export function evidenceLabel(key) {
  if (EVIDENCE_LABELS[key]) return EVIDENCE_LABELS[key];
  let k = key;
  for (const [suffix] of UNIT_SUFFIXES) {
    if (k.endsWith(suffix) && k.length > suffix.length) { k = k.slice(0, -suffix.length); break; }
  }
  k = k.replace(/_z$/, " (z)").replace(/_/g, " ");
  return k.charAt(0).toUpperCase() + k.slice(1);
}

export function evidenceValue(key, v) {
  for (const [suffix, fmt] of UNIT_SUFFIXES) if (key.endsWith(suffix)) return fmt(v);
  return fmtCount(v);
}

export function evidence(ev) {
  const keys = Object.keys(ev || {}).sort();
  if (keys.length === 0) return "";
  return `<div class="evidence">${keys.map((k) => `<span title="${esc(k)}">${esc(evidenceLabel(k))} <b data-key="${esc(k)}" data-value="${esc(ev[k])}">${esc(evidenceValue(k, ev[k]))}</b></span>`).join("")}</div>`;
}

// ---------- findings ----------

function findingSubject(f) {
  const team = (f.labels && (f.labels.team || f.labels.team_id)) || (/team/.test(f.kind) || f.kind === "outlier_team" || f.kind === "cache_stale" ? f.subject : "");
  if (team && /^[1-9]\d*$/.test(team)) return `<a href="/teams/${esc(team)}" data-link>team ${esc(team)}</a>`;
  if (f.labels && f.labels.queue) return `<a href="/?queue=${encodeURIComponent(f.labels.queue)}" data-link>queue ${esc(f.labels.queue)}</a>`;
  return esc(f.subject);
}

export function findingList(list, emptyText) {
  if (!list || list.length === 0) return `<div class="empty">${esc(emptyText)}</div>`;
  return list.map((f) => `
    <div class="finding ${esc(f.severity)}" data-finding="${esc(f.id)}" data-kind="${esc(f.kind)}">
      <div class="head">
        ${badge(f.severity, sevClass(f.severity))} ${badge(f.state, f.state === "firing" ? sevClass(f.severity) : "")}
        <span class="summary">${esc(f.summary)}</span>
        <span class="muted">· ${findingSubject(f)} · ${esc(f.kind)} · since ${when(f.fired_at || f.active_at)}</span>
        ${f.runbook_url ? `<a href="${esc(f.runbook_url)}" target="_blank" rel="noopener">runbook</a>` : ""}
      </div>
      ${f.description ? `<div class="desc">${esc(f.description)}</div>` : ""}
      ${evidence(f.evidence)}
    </div>`).join("");
}

// queueState says how a queue reads, from the backlog detector's own judgment (the one
// that pages), never from the chart's fitted line: "alarm" when the detector's ETA to the
// limit is under two days, "rising" when it sees the depth rise, "steady" otherwise and
// "none" while it has not judged the queue. Only "alarm" is drawn in red.
export function queueState(q) {
  if (!q || !q.growth) return "none";
  const eta = q.detector_eta_seconds;
  if (eta != null && eta < 48 * 3600) return "alarm";
  if (eta != null) return "rising";
  return "steady";
}

const VERDICTS = {
  growing: ["growing", "warn"], stalled: ["stalled", "warn"],
  insufficient_data: ["insufficient data", ""], not_growing: ["not growing", "ok"],
};

// etaText is the backlog detector's verdict on q and its ETA to the limit, with the
// evidence it judged on.
export function etaText(q, limit) {
  const g = q && q.growth;
  if (!g) return `<span class="muted" data-field="verdict" data-value="none">not judged by the backlog detector yet</span>`;
  const [word, cls] = VERDICTS[g.verdict] || [g.verdict, ""];
  // One item per fact: the facts row lays its children out with gaps.
  let html = `<span>detector <span data-field="verdict" data-value="${esc(g.verdict)}">${badge(word, cls)}</span></span>`;
  if (g.verdict !== "insufficient_data") {
    html += ` <span><b>${esc(`${g.slope_per_hour >= 0 ? "+" : ""}${fmtCount(g.slope_per_hour)}/h`)}</b> τ ${esc(g.tau.toFixed(2))}</span>`;
  }
  const s = q.detector_eta_seconds;
  if (s != null) {
    const c = s < 4 * 3600 ? "crit" : s < 24 * 3600 ? "warn" : "";
    html += ` <span>reaches ${esc(fmtCount(limit))} in <span class="eta ${c}" data-field="detector-eta" data-eta="${s}">${esc(fmtDuration(s))}</span></span>`;
  }
  if (g.note) html += ` <span class="muted">${esc(g.note)}</span>`;
  return html;
}

// findingsClass is the colour the firing findings of kinds give a card: "crit" for a
// critical one, "warn" for a warning, "" for none.
export function findingsClass(active, kinds) {
  const sev = (active || []).filter((f) => kinds.includes(f.kind) && f.state === "firing").map((f) => f.severity);
  return sev.includes("critical") ? "crit" : sev.length ? "warn" : "";
}

// worse returns the more severe of two card classes.
export function worse(a, b) {
  const rank = { crit: 3, warn: 2, ok: 1, "": 0 };
  return (rank[a] || 0) >= (rank[b] || 0) ? a : b;
}

export const BACKLOG_KINDS = ["backlog_growth", "backlog_stalled"];
export const CACHE_KINDS = ["cache_stale", "fleet_cache_stale", "cache_mismatch"];

// ---------- workers ----------

const WORKER_KINDS = ["workers_crashlooping", "worker_oom_kills", "workers_false_calm", "worker_memory_near_limit"];

// oomCritical is how many OOM kills in the window make the Workers card critical on
// their own: one can be a fluke, several in an hour are a build that cannot fit.
export const OOM_CRITICAL = 3;

// workersCardClass colours the Workers card from what the pods and the detectors say,
// not only readiness: a fleet that is all ready between two OOM kills has not
// recovered. w = {active, crashing, ooms, lastOOM, ready, total}.
export function workersCardClass(w) {
  const sev = findingsClass(w.active, WORKER_KINDS);
  if (w.crashing > 0 || w.ooms >= OOM_CRITICAL || sev === "crit") return "crit";
  if (w.ooms > 0 || w.lastOOM > 0 || sev === "warn") return "warn";
  if (!w.total) return "";
  return w.ready === w.total ? "ok" : "warn";
}

// ---------- rebuilds ----------

// laneBars shows each lane's builds running in this replica out of its workers; the job
// table's count across replicas is said beside it when it differs.
export function laneBars(st) {
  return st.lanes.map((l) => {
    const here = l.running_here ?? Math.min(l.running, l.workers);
    const elsewhere = l.running > here ? ` · <span class="muted" title="Jobs the job table lists as running, every replica together: it includes builds whose end is not yet recorded and jobs of a stopped replica until they are rescued.">${fmtCount(l.running)} in the job table</span>` : "";
    return `
    <div class="lane" data-lane="${esc(l.lane)}">
      <span class="name">${esc(l.lane)}</span>
      ${meter(here, Math.max(l.workers, 1), { severity: false })}
      <span class="num small"><span data-field="running">${here}</span> of ${l.workers} workers busy · <span data-field="waiting">${fmtCount(l.waiting)}</span> waiting${elsewhere}</span>
    </div>`;
  }).join("");
}

export function memoryLane(st) {
  return `<div class="lane" data-lane="memory"><span class="name">memory</span>${meter(st.budget_in_use_bytes, st.budget_bytes)}<span class="num small">${fmtBytes(st.budget_in_use_bytes)} of ${fmtBytes(st.budget_bytes)} reserved</span></div>`;
}

export function rebuildTable(list, withTeam) {
  if (!list || list.length === 0) return `<div class="empty">No builds yet.</div>`;
  let html = `<table class="builds"><thead><tr>${withTeam ? "<th>Team</th>" : ""}<th>Finished</th><th>Lane</th><th>Result</th><th class="r">Took</th>
    <th class="r" title="What the build reserved of the memory budget before it started: its own bound">Memory bound</th>
    <th class="r" title="The whole process's peak Go heap while the build ran, other builds included: not the build's own figure">Process heap peak</th>
    <th class="r">Flags</th><th class="r">Flags payload</th><th class="r">Definitions</th></tr></thead><tbody>`;
  for (const b of list) {
    const took = (new Date(b.finished_at) - new Date(b.started_at)) / 1000;
    html += `<tr data-job="${b.job_id}">${withTeam ? `<td><a href="/teams/${b.team_id}" data-link>team ${b.team_id}</a></td>` : ""}
      <td>${isSet(b.finished_at) ? when(b.finished_at) : "–"}</td><td>${esc(b.lane)}</td>
      <td>${b.ok ? (b.unchanged ? badge("unchanged", "info") : badge("built", "ok")) : badge("failed", "crit") + ` <span class="err small">${esc(b.error)}</span>`}${b.skipped_flags ? " " + badge(b.skipped_flags + " skipped", "warn") : ""}</td>
      <td class="r num" data-field="took"${b.first_pass_seconds ? ` title="of it the first pass ${esc(fmtDuration(b.first_pass_seconds))}: the flag database extracting references${b.prediction_reused ? ` of the flags changed since the previous build${b.prediction_source === "shared" ? " (another replica's or process's, from the shared store)" : ""}` : ""}${b.attempts > 1 ? `; ${b.attempts} streaming passes, the prediction missed` : ""}"` : ""}>${isSet(b.started_at) && isSet(b.finished_at) ? fmtDuration(took) : "–"}</td>
      <td class="r" data-field="memory-bound">${b.memory_bound_bytes ? num(b.memory_bound_bytes, fmtBytes) : "–"}</td>
      <td class="r muted" data-field="heap"${b.peak_live_heap_bytes ? ` title="live ${esc(fmtBytes(b.peak_live_heap_bytes))}, the rest garbage not yet collected"` : ""}>${b.peak_heap_bytes ? num(b.peak_heap_bytes, fmtBytes) : "–"}</td>
      <td class="r">${num(b.flags, fmtCount)}</td>
      <td class="r">${num(b.flags_bytes, fmtBytes)}</td><td class="r">${num(b.definitions_bytes, fmtBytes)}</td></tr>`;
  }
  return html + `</tbody></table>`;
}
