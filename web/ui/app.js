// flagwarden dashboard: a small single-page app over /api/v1. No framework and no build
// step: pages are rendered from template strings, charts are hand-drawn SVG, and the
// page refreshes its data every REFRESH_MS without reloading.
"use strict";

const REFRESH_MS = 10000;
const TOKEN_KEY = "flagwarden.token";

// ---------- formatting for people ----------

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// bytes: 1,024-based with IEC names, as the config writes memory (512MiB, 8GiB).
function fmtBytes(n) {
  if (n == null || isNaN(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  const digits = i === 0 || v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return (n < 0 ? "-" : "") + v.toFixed(digits).replace(/\.0+$|(\.\d*[1-9])0+$/, "$1") + " " + units[i];
}

// counts: 1.2k, 3.4M.
function fmtCount(n) {
  if (n == null || isNaN(n)) return "–";
  const a = Math.abs(n);
  const sign = n < 0 ? "-" : "";
  const one = (v, u) => sign + (v >= 100 ? v.toFixed(0) : v.toFixed(1).replace(/\.0$/, "")) + u;
  if (a >= 1e9) return one(a / 1e9, "B");
  if (a >= 1e6) return one(a / 1e6, "M");
  if (a >= 1e3) return one(a / 1e3, "k");
  return sign + (Number.isInteger(a) ? a : a.toFixed(a < 10 ? 2 : 1).replace(/\.?0+$/, ""));
}

function fmtDuration(sec) {
  if (sec == null || isNaN(sec)) return "–";
  const s = Math.abs(sec);
  if (s < 1) return (s * 1000).toFixed(0) + " ms";
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0).replace(/\.0$/, "") + " s";
  if (s < 3600) return (s / 60).toFixed(s < 600 ? 1 : 0).replace(/\.0$/, "") + " min";
  if (s < 86400 * 2) return (s / 3600).toFixed(s < 36000 ? 1 : 0).replace(/\.0$/, "") + " h";
  return (s / 86400).toFixed(s < 864000 ? 1 : 0).replace(/\.0$/, "") + " d";
}

function isSet(t) { return t && !String(t).startsWith("0001-01-01"); }

// clockOffset is the server's clock minus the browser's, from the X-Flagwarden-Now
// header of the last answer: times are judged against the clock they were measured by.
let clockOffset = 0;

function ago(t) {
  if (!isSet(t)) return "never";
  return agoSeconds((Date.now() + clockOffset - new Date(t).getTime()) / 1000);
}

function agoSeconds(sec) {
  if (sec < -5) return "in " + fmtDuration(-sec);
  if (sec < 5) return "just now";
  return fmtDuration(sec) + " ago";
}

function pct(x) { return (x * 100).toFixed(x < 0.1 ? 1 : 0) + "%"; }

// A number shown to a person, with the raw value kept for machines (and tests).
function num(v, fmt, cls = "") { return `<span class="num ${cls}" data-value="${esc(v)}">${esc(fmt(v))}</span>`; }

function badge(text, cls = "") { return `<span class="badge ${cls}">${esc(text)}</span>`; }

function sevClass(s) { return s === "critical" ? "crit" : "warn"; }

// ---------- API access ----------

class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

async function api(path, opts = {}) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = "Bearer " + token();
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch("/api/v1" + path, {
    method: opts.method || "GET", headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const serverNow = Date.parse(res.headers.get("X-Flagwarden-Now") || "");
  if (!Number.isNaN(serverNow)) clockOffset = serverNow - Date.now();
  let data = null;
  try { data = await res.json(); } catch (_) { /* an empty or non-JSON body */ }
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw new APIError(res.status, e.code || "http_" + res.status, e.message || res.statusText);
  }
  return data;
}

// optional turns "component disabled" (503 disabled) into null so a page can say so.
async function optional(p) {
  try { return await p; } catch (e) {
    if (e instanceof APIError && e.code === "disabled") return null;
    throw e;
  }
}

let me = { can_read: false, can_operate: false };

async function whoami() {
  try { me = await api("/whoami"); } catch (e) {
    me = { can_read: false, can_operate: false, error: e.message };
  }
  const b = document.getElementById("auth-button");
  b.textContent = me.authenticated ? `${me.name} · ${me.role}` : me.error ? "Token rejected" : "Token";
  b.title = me.authenticated ? "Signed in with a " + me.role + " token" : "Paste an API token";
}

// ---------- toast ----------

let toastTimer = null;
function toast(msg, error = false) {
  const t = document.getElementById("toast");
  t.textContent = msg;
  t.className = "toast" + (error ? " error" : "");
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
}

// ---------- charts ----------

const niceTicks = (lo, hi, n = 4) => {
  if (hi <= lo) hi = lo + 1;
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
  return out;
};

function timeLabel(ms, spanMs) {
  const d = new Date(ms);
  if (spanMs > 3 * 86400e3) return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

// lineChart draws points [{t, v}] with an optional Theil–Sen trend line, projected a
// quarter of the window past now, and an optional limit line.
function lineChart(points, o = {}) {
  const W = o.width || 1200, H = o.height || 170, L = 64, R = 16, T = 12, B = 26;
  if (!points || points.length === 0) return `<div class="empty">No history yet.</div>`;
  if (points.length === 1) {
    const fmt1 = o.fmt || fmtCount;
    return `<div class="empty">One measurement so far: <b>${esc(fmt1(points[0].v))}</b> ${esc(ago(points[0].t))}. The chart appears from the second.</div>`;
  }
  const xs = points.map((p) => new Date(p.t).getTime());
  const ys = points.map((p) => p.v);
  const x0 = xs[0];
  const xNow = Math.max(xs[xs.length - 1], x0 + 1);
  const trend = o.trend;
  const x1 = trend ? xNow + (xNow - x0) / 4 : xNow;
  let yLo = Math.min(0, ...ys), yHi = Math.max(...ys);
  let trendAt = null;
  if (trend) {
    const anchor = new Date(trend.anchor).getTime();
    trendAt = (ms) => trend.intercept + trend.slope_per_hour * (ms - anchor) / 3600e3;
    yHi = Math.max(yHi, trendAt(x1));
    yLo = Math.min(yLo, trendAt(x1));
  }
  if (o.limit && o.showLimit) yHi = Math.max(yHi, o.limit);
  if (yHi === yLo) yHi = yLo + 1;
  yHi += (yHi - yLo) * 0.05;
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = (y) => T + (1 - (y - yLo) / (yHi - yLo)) * (H - T - B);
  const fmt = o.fmt || fmtCount;
  let s = `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(o.label || "chart")}">`;
  s += `<g class="grid">`;
  for (const v of niceTicks(yLo, yHi)) {
    s += `<line x1="${L}" x2="${W - R}" y1="${sy(v)}" y2="${sy(v)}"/><text x="${L - 8}" y="${sy(v) + 4}" text-anchor="end">${esc(fmt(v))}</text>`;
  }
  s += `</g>`;
  const span = x1 - x0;
  for (let i = 0; i <= 4; i++) {
    const x = x0 + span * i / 4;
    s += `<text x="${sx(x)}" y="${H - 6}" text-anchor="${i === 0 ? "start" : i === 4 ? "end" : "middle"}">${esc(timeLabel(x, span))}</text>`;
  }
  if (o.limit && o.showLimit) {
    s += `<line class="limit" x1="${L}" x2="${W - R}" y1="${sy(o.limit)}" y2="${sy(o.limit)}"/>`;
    s += `<text x="${W - R}" y="${sy(o.limit) - 4}" text-anchor="end">limit ${esc(fmt(o.limit))}</text>`;
  }
  const path = points.map((p, i) => `${i ? "L" : "M"}${sx(xs[i]).toFixed(1)},${sy(p.v).toFixed(1)}`).join("");
  s += `<path class="area" d="${path}L${sx(xNow).toFixed(1)},${sy(Math.max(yLo, 0))}L${sx(x0).toFixed(1)},${sy(Math.max(yLo, 0))}Z"/>`;
  s += `<path class="line" d="${path}"/>`;
  if (trendAt) {
    s += `<line class="now" x1="${sx(xNow)}" x2="${sx(xNow)}" y1="${T}" y2="${H - B}"/><text x="${sx(xNow) + 4}" y="${T + 10}">now</text>`;
    s += `<line class="trend" x1="${sx(x0)}" y1="${sy(trendAt(x0))}" x2="${sx(x1)}" y2="${sy(trendAt(x1))}"><title>Theil–Sen trend, projected</title></line>`;
  }
  return s + `</svg>`;
}

// histogram draws half-decade size bins on a log x axis; counts use a log scale too so
// a bin with one team is visible beside one with thousands. Outlier bins are red.
function histogram(buckets, o = {}) {
  const W = 1200, H = 240, L = 48, R = 16, T = 16, B = 40;
  if (!buckets || buckets.length === 0) return `<div class="empty">No teams measured yet.</div>`;
  const n = buckets.length;
  const maxC = Math.max(1, ...buckets.map((b) => b.count));
  const bw = (W - L - R) / n;
  const sy = (c) => T + (1 - Math.log10(c + 1) / Math.log10(maxC + 1)) * (H - T - B);
  const outlierBins = new Set();
  for (const t of o.outliers || []) {
    buckets.forEach((b, i) => { if (t.payload_bytes >= b.lower_bytes && t.payload_bytes < b.upper_bytes) outlierBins.add(i); });
  }
  let s = `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="team size distribution">`;
  s += `<g class="grid">`;
  for (const c of [1, 10, 100, 1000, 10000, 100000].filter((c) => c <= maxC * 1.01)) {
    s += `<line x1="${L}" x2="${W - R}" y1="${sy(c)}" y2="${sy(c)}"/><text x="${L - 6}" y="${sy(c) + 4}" text-anchor="end">${fmtCount(c)}</text>`;
  }
  s += `</g>`;
  buckets.forEach((b, i) => {
    const x = L + i * bw;
    const y = b.count ? sy(b.count) : H - B;
    const cls = outlierBins.has(i) ? "bar outlier" : "bar";
    s += `<rect class="${cls}" data-count="${b.count}" x="${x + 2}" y="${y}" width="${Math.max(bw - 4, 1)}" height="${H - B - y}"><title>${esc(fmtBytes(b.lower_bytes))}–${esc(fmtBytes(b.upper_bytes))}: ${b.count} teams</title></rect>`;
    if (b.count) s += `<text x="${x + bw / 2}" y="${y - 4}" text-anchor="middle">${fmtCount(b.count)}</text>`;
    s += `<text x="${x}" y="${H - B + 16}" text-anchor="${i === 0 ? "start" : "middle"}">${esc(fmtBytes(b.lower_bytes))}</text>`;
  });
  if (o.limitBytes) {
    // Where a load-everything build of a team this size would hit the worker limit.
    const i = buckets.findIndex((b) => o.limitBytes < b.upper_bytes);
    if (i >= 0) {
      const b = buckets[i];
      const frac = b.lower_bytes > 0 ? Math.log10(o.limitBytes / b.lower_bytes) / Math.log10(b.upper_bytes / b.lower_bytes) : 0;
      const x = L + (i + Math.min(Math.max(frac, 0), 1)) * bw;
      const right = x > W * 0.7;
      s += `<line class="marker" x1="${x}" x2="${x}" y1="${T}" y2="${H - B}"/><text x="${right ? x - 6 : x + 6}" y="${T + 8}" text-anchor="${right ? "end" : "start"}">${esc(o.limitLabel || "")}</text>`;
    }
  }
  for (const t of o.outliers || []) {
    const i = buckets.findIndex((b) => t.payload_bytes >= b.lower_bytes && t.payload_bytes < b.upper_bytes);
    if (i >= 0) s += `<text x="${L + i * bw + bw / 2}" y="${H - 6}" text-anchor="middle" fill="#c9372c">team ${t.team_id}</text>`;
  }
  return s + `</svg>`;
}

function meter(used, total) {
  const f = total > 0 ? Math.min(used / total, 1) : 0;
  const cls = f > 0.9 ? "crit" : f > 0.7 ? "warn" : "";
  return `<div class="meter ${cls}" title="${pct(f)}"><div style="width:${(f * 100).toFixed(1)}%"></div></div>`;
}

// ---------- shared pieces ----------

function evidence(ev) {
  const keys = Object.keys(ev || {}).sort();
  if (keys.length === 0) return "";
  const fmtFor = (k) => /bytes/.test(k) ? fmtBytes : /seconds/.test(k) ? fmtDuration : fmtCount;
  return `<div class="evidence">${keys.map((k) => `<span>${esc(k.replace(/_/g, " "))} <b data-key="${esc(k)}" data-value="${esc(ev[k])}">${esc(fmtFor(k)(ev[k]))}</b></span>`).join("")}</div>`;
}

function findingSubject(f) {
  const team = (f.labels && (f.labels.team || f.labels.team_id)) || (/team/.test(f.kind) || f.kind === "outlier_team" || f.kind === "cache_stale" ? f.subject : "");
  if (team && /^\d+$/.test(team)) return `<a href="/teams/${esc(team)}" data-link>team ${esc(team)}</a>`;
  if (f.labels && f.labels.queue) return `<a href="/?queue=${encodeURIComponent(f.labels.queue)}" data-link>queue ${esc(f.labels.queue)}</a>`;
  return esc(f.subject);
}

function findingList(list, emptyText) {
  if (!list || list.length === 0) return `<div class="empty">${esc(emptyText)}</div>`;
  return list.map((f) => `
    <div class="finding ${esc(f.severity)}" data-finding="${esc(f.id)}">
      <div class="head">
        ${badge(f.severity, sevClass(f.severity))} ${badge(f.state, f.state === "firing" ? sevClass(f.severity) : "")}
        <span class="summary">${esc(f.summary)}</span>
        <span class="muted">· ${findingSubject(f)} · ${esc(f.kind)} · since ${esc(ago(f.fired_at || f.active_at))}</span>
        ${f.runbook_url ? `<a href="${esc(f.runbook_url)}" target="_blank" rel="noopener">runbook</a>` : ""}
      </div>
      ${f.description ? `<div class="desc">${esc(f.description)}</div>` : ""}
      ${evidence(f.evidence)}
    </div>`).join("");
}

function etaText(trend, limit) {
  if (!trend) return `<span class="muted">not enough history for a trend</span>`;
  const slope = `${trend.slope_per_hour >= 0 ? "+" : ""}${fmtCount(trend.slope_per_hour)}/h`;
  if (trend.eta_to_limit_seconds != null) {
    const s = trend.eta_to_limit_seconds;
    const cls = s < 4 * 3600 ? "crit" : s < 24 * 3600 ? "warn" : "";
    return `trend <b>${esc(slope)}</b> · reaches ${esc(fmtCount(limit))} in <span class="eta ${cls}" data-eta="${s}">${esc(fmtDuration(s))}</span>`;
  }
  if (trend.eta_to_empty_seconds != null) {
    return `trend <b>${esc(slope)}</b> · drains in <span class="eta" data-eta="${trend.eta_to_empty_seconds}">${esc(fmtDuration(trend.eta_to_empty_seconds))}</span>`;
  }
  return `trend <b>${esc(slope)}</b> · steady`;
}

function card(label, valueHTML, sub, cls = "", id = "") {
  return `<div class="card ${cls}" ${id ? `id="${id}"` : ""}><div class="label">${esc(label)}</div><div class="value">${valueHTML}</div><div class="sub">${sub || ""}</div></div>`;
}

// The Workers card is as severe as the worst firing worker finding, and never green
// while pods crash-loop or were OOM-killed in the window: a fleet that is all ready
// between two kills has not recovered.
const WORKER_KINDS = ["workers_crashlooping", "worker_oom_kills", "workers_false_calm", "worker_memory_near_limit"];
function workersCardClass(active, crashing, ooms, ready, total) {
  const sev = (active || []).filter((f) => WORKER_KINDS.includes(f.kind) && f.state === "firing").map((f) => f.severity);
  if (crashing || sev.includes("critical")) return "crit";
  if (ooms > 0 || sev.includes("warning")) return "warn";
  return total && ready === total ? "ok" : "";
}

function laneBars(st) {
  return st.lanes.map((l) => `
    <div class="lane" data-lane="${esc(l.lane)}">
      <span class="name">${esc(l.lane)}</span>
      ${meter(l.running, Math.max(l.workers, 1))}
      <span class="num small"><span data-field="running">${l.running}</span>/${l.workers} running · <span data-field="waiting">${fmtCount(l.waiting)}</span> waiting</span>
    </div>`).join("");
}

// ---------- pages ----------

async function overviewPage() {
  const params = new URLSearchParams(location.search);
  const selected = params.get("queue");
  const [findings, queues, pods, engine, collectors] = await Promise.all([
    api("/findings?limit=20"), api("/queues"), api("/pods"), optional(api("/rebuilds")), api("/collectors"),
  ]);
  const crit = findings.active.filter((f) => f.severity === "critical").length;
  const deepest = queues.queues[0];
  const podsTotal = pods.namespaces.reduce((a, n) => a + n.total, 0);
  const podsReady = pods.namespaces.reduce((a, n) => a + n.ready, 0);
  const crashing = pods.namespaces.reduce((a, n) => a + n.crashlooping, 0);
  const ooms = pods.namespaces.reduce((a, n) => a + n.oom_kills_in_window, 0);
  const up = collectors.collectors.filter((c) => c.up).length;

  let html = `<h1>Overview</h1><div class="cards">`;
  html += card("Active findings", num(findings.active.length, String), findings.enabled ? `${crit} critical` : "detectors disabled", crit ? "crit" : findings.active.length ? "warn" : "ok", "card-findings");
  html += card("Deepest queue", deepest ? num(deepest.depth, fmtCount) : "–", deepest ? `${esc(deepest.name)} · ${etaText(deepest.trend, queues.backlog_limit)}` : "no queues seen", deepest && deepest.trend && deepest.trend.eta_to_limit_seconds != null ? "warn" : "", "card-queue");
  html += card("Workers ready", `${num(podsReady, String)}<span class="muted">/${podsTotal}</span>`, `${crashing} crash-looping · ${fmtCount(ooms)} OOM kills in the last hour`, workersCardClass(findings.active, crashing, ooms, podsReady, podsTotal), "card-workers");
  html += engine
    ? card("Rebuild memory", num(engine.budget_in_use_bytes, fmtBytes), `of ${fmtBytes(engine.budget_bytes)} budget · ${engine.quarantined.length} quarantined`, engine.budget_in_use_bytes > 0.9 * engine.budget_bytes ? "warn" : "", "card-budget")
    : card("Rebuild engine", "off", "disabled in this deployment");
  html += card("Collectors up", `${num(up, String)}<span class="muted">/${collectors.collectors.length}</span>`, up < collectors.collectors.length ? "some collectors are failing" : "all passing", up < collectors.collectors.length ? "crit" : "ok", "card-collectors");
  html += `</div>`;

  html += `<div class="panel" id="findings"><h2>Active findings</h2>${findings.enabled ? findingList(findings.active, "Nothing is wrong right now.") : `<div class="empty">Detectors are disabled.</div>`}</div>`;

  html += `<div class="panel" id="queues"><h2>Queues</h2>`;
  if (!queues.collected) html += `<div class="empty">The Celery collector has not reported yet.</div>`;
  for (const q of queues.queues) {
    const prios = Object.entries(q.by_priority || {}).sort((a, b) => a[0] - b[0]).map(([p, n]) => `p${esc(p)} <b>${fmtCount(n)}</b>`).join(" · ");
    const comp = q.composition || {};
    const tasks = Object.entries(comp.by_task || {}).sort((a, b) => b[1] - a[1]).slice(0, 3).map(([t, n]) => `${esc(t.split(".").pop())} ${n}`).join(", ");
    html += `<div class="queue ${q.name === selected ? "selected" : ""}" data-queue="${esc(q.name)}">
      <h3>${esc(q.name)} ${q.bound ? "" : badge("undeclared")}</h3>
      <div class="facts">
        <span>depth <b data-field="depth" data-value="${q.depth}">${fmtCount(q.depth)}</b></span>
        <span>${prios || "no priority lists"}</span>
        <span>unacked <b data-field="unacked" data-value="${q.unacked}">${fmtCount(q.unacked)}</b></span>
        <span>overdue <b data-field="overdue" data-value="${q.overdue}">${fmtCount(q.overdue)}</b></span>
        <span>oldest <b>${q.oldest_age_seconds ? fmtDuration(q.oldest_age_seconds) : "–"}</b></span>
        ${comp.sampled ? `<span>sample of ${comp.sampled}: ${tasks || "–"} · ${comp.distinct_teams} teams · <b>${pct(comp.duplicate_ratio)}</b> duplicates</span>` : ""}
      </div>
      <div class="facts">${etaText(q.trend, queues.backlog_limit)}</div>
      ${lineChart(q.history, { trend: q.trend, limit: queues.backlog_limit, showLimit: q.trend && q.trend.eta_to_limit_seconds != null && q.trend.eta_to_limit_seconds < 48 * 3600, label: "depth of " + q.name })}
    </div>`;
  }
  html += `</div>`;

  html += `<div class="grid cols-2"><div class="panel" id="workers"><h2>Worker health</h2>`;
  if (!pods.collected) html += `<div class="empty">The pod collector has not reported yet.</div>`;
  for (const n of pods.namespaces) {
    html += `<div class="facts"><b>${esc(n.namespace)}</b>: <span data-field="ready">${n.ready}</span>/${n.total} ready ·
      ${n.crashlooping ? badge(n.crashlooping + " CrashLoopBackOff", "crit") : badge("no crash loops", "ok")}
      ${n.last_terminated_oomkilled ? badge(n.last_terminated_oomkilled + " last killed by OOM", "crit") : ""}
      · ${fmtCount(n.oom_kills_in_window)} OOM kills, ${fmtCount(n.restarts_in_window)} restarts in the last hour
      ${n.max_memory_ratio ? `· memory up to ${pct(n.max_memory_ratio)} of limit` : ""}</div>`;
  }
  if (pods.pods.length) {
    html += `<table><thead><tr><th>Pod</th><th>Ready</th><th class="r">Restarts</th><th>State</th><th>Last exit</th></tr></thead><tbody>`;
    for (const p of pods.pods.slice(0, 12)) {
      html += `<tr><td class="mono">${esc(p.name)}</td><td>${p.ready ? badge("ready", "ok") : badge("not ready", "crit")}</td>
        <td class="r num">${p.restarts}${p.restart_delta ? ` <span class="err">+${p.restart_delta}</span>` : ""}</td>
        <td>${p.waiting ? badge(p.waiting, p.waiting === "CrashLoopBackOff" ? "crit" : "warn") : esc(p.phase)}</td>
        <td>${p.last_termination ? `${esc(p.last_termination)} (exit ${p.last_exit_code})${isSet(p.last_terminated_at) ? " " + esc(ago(p.last_terminated_at)) : ""}` : "–"}</td></tr>`;
    }
    html += `</tbody></table>`;
    if (pods.pods.length > 12) html += `<div class="muted small">and ${pods.pods.length - 12} more</div>`;
  }
  html += `</div><div class="panel" id="lanes"><h2>Rebuild lanes</h2>`;
  if (engine) {
    html += laneBars(engine);
    html += `<div class="lane"><span class="name">memory</span>${meter(engine.budget_in_use_bytes, engine.budget_bytes)}<span class="num small">${fmtBytes(engine.budget_in_use_bytes)} / ${fmtBytes(engine.budget_bytes)}</span></div>`;
    html += `<p class="muted small"><a href="/rebuilds" data-link>All rebuilds →</a></p>`;
  } else {
    html += `<div class="empty">Rebuild engine disabled.</div>`;
  }
  html += `</div></div>`;

  html += `<div class="panel" id="collectors"><h2>Collectors</h2><table><thead><tr><th>Loop</th><th>Status</th><th>Last success</th><th class="r">Passes</th><th class="r">Failures</th><th class="r">Missed</th><th class="r">Last pass</th><th>Last error</th></tr></thead><tbody>`;
  for (const c of collectors.collectors) {
    html += `<tr data-collector="${esc(c.name)}"><td><b>${esc(c.name)}</b></td><td>${c.up ? badge("up", "ok") : badge("down", "crit")}</td>
      <td>${esc(ago(c.last_success))}</td><td class="r num">${fmtCount(c.passes)}</td><td class="r num">${fmtCount(c.failures)}</td>
      <td class="r num">${fmtCount(c.missed_iterations)}</td><td class="r num">${fmtDuration(c.last_pass_seconds)}</td>
      <td class="err small">${esc(c.last_error || "")}</td></tr>`;
  }
  if (collectors.collectors.length === 0) html += `<tr><td colspan="8" class="empty">No loops run in this process.</td></tr>`;
  html += `</tbody></table></div>`;
  return html;
}

const teamsState = { sort: "payload_bytes", order: "desc", offset: 0, limit: 25, min: "" };

async function teamsPage() {
  const q = new URLSearchParams({ sort: teamsState.sort, order: teamsState.order, offset: teamsState.offset, limit: teamsState.limit });
  if (teamsState.min) q.set("min_bytes", teamsState.min);
  const [dist, page] = await Promise.all([api("/teams/distribution"), api("/teams?" + q)]);
  let html = `<h1>Teams</h1><div class="cards">`;
  html += card("Teams measured", num(dist.teams, fmtCount), dist.collected ? `measured ${esc(ago(dist.at))}` : "not measured yet", "", "card-teams");
  html += card("Median payload", num(dist.p50_bytes, fmtBytes), "p50 of team payload sizes");
  html += card("p99 payload", num(dist.p99_bytes, fmtBytes), "99% of teams are smaller");
  html += card("Largest payload", num(dist.max_bytes, fmtBytes), dist.p50_bytes ? `${fmtCount(dist.max_bytes / dist.p50_bytes)}× the median` : "", dist.outliers.length ? "crit" : "", "card-largest");
  html += `</div>`;
  html += `<div class="panel" id="distribution"><h2>Payload size distribution (log scale)</h2>
    ${histogram(dist.buckets, { outliers: dist.outliers, limitBytes: dist.naive_limit_payload_bytes, limitLabel: "naive build > worker memory" })}
    <p class="muted small">Each bar counts the teams whose payload falls in a 4× size range; red bars hold outliers. The dashed line is where a load-everything build (${esc(dist.naive_build_factor)}× both caches' payloads) exceeds the ${esc(fmtBytes(dist.worker_memory_limit_bytes))} worker limit.</p>
    ${dist.outliers.length ? `<div class="facts">Outliers: ${dist.outliers.map((t) => `<a href="/teams/${t.team_id}" data-link>team ${t.team_id}</a> (${fmtBytes(t.payload_bytes)})`).join(", ")}</div>` : ""}
  </div>`;
  const col = (key, label, right = true) => {
    const on = teamsState.sort === key;
    const arrow = on ? (teamsState.order === "desc" ? " ↓" : " ↑") : "";
    return `<th class="${right ? "r" : ""}"><a href="#" class="sort ${on ? "on" : ""}" data-sort="${key}">${esc(label)}${arrow}</a></th>`;
  };
  html += `<div class="panel" id="top-teams"><h2>Top teams</h2>
    <form class="filters" id="team-filter"><label>At least <select id="min-bytes">
      ${[["", "any size"], ["1000000", "1 MB"], ["10000000", "10 MB"], ["100000000", "100 MB"], ["1000000000", "1 GB"]].map(([v, l]) => `<option value="${v}" ${teamsState.min === v ? "selected" : ""}>${l}</option>`).join("")}
    </select></label><span class="muted">${fmtCount(page.total)} teams match</span></form>
    <table><thead><tr>${col("team_id", "Team", false)}${col("payload_bytes", "Payload")}<th class="r">Naive build</th>${col("flags", "Flags")}${col("cohorts", "Cohorts")}${col("filters_bytes", "Filters")}${col("updated_at", "Changed")}<th>Marks</th></tr></thead><tbody>`;
  for (const t of page.teams) {
    html += `<tr data-team="${t.team_id}"><td><a href="/teams/${t.team_id}" data-link>team ${t.team_id}</a></td>
      <td class="r">${num(t.payload_bytes, fmtBytes)}</td><td class="r">${num(t.naive_build_bytes, fmtBytes)}</td>
      <td class="r">${num(t.flags, fmtCount)}</td><td class="r">${num(t.cohorts, fmtCount)}</td><td class="r">${num(t.filters_bytes, fmtBytes)}</td>
      <td class="r muted">${esc(ago(t.updated_at))}</td>
      <td>${t.outlier ? badge("outlier", "crit") : ""} ${t.quarantined ? badge("quarantined", "warn") : ""} ${t.bad_rows ? badge(t.bad_rows + " bad rows", "warn") : ""}</td></tr>`;
  }
  if (page.teams.length === 0) html += `<tr><td colspan="8" class="empty">No teams.</td></tr>`;
  const from = page.total ? page.offset + 1 : 0, to = page.offset + page.teams.length;
  html += `</tbody></table><div class="pager"><span class="muted">${from}–${to} of ${fmtCount(page.total)}</span>
    <button class="secondary" id="prev" ${page.offset === 0 ? "disabled" : ""}>Previous</button>
    <button class="secondary" id="next" ${to >= page.total ? "disabled" : ""}>Next</button></div></div>`;
  return html;
}

function bindTeams(root) {
  root.querySelectorAll("a.sort").forEach((a) => a.addEventListener("click", (e) => {
    e.preventDefault();
    const k = a.dataset.sort;
    if (teamsState.sort === k) teamsState.order = teamsState.order === "desc" ? "asc" : "desc";
    else { teamsState.sort = k; teamsState.order = k === "team_id" ? "asc" : "desc"; }
    teamsState.offset = 0;
    refresh();
  }));
  const sel = root.querySelector("#min-bytes");
  if (sel) sel.addEventListener("change", () => { teamsState.min = sel.value; teamsState.offset = 0; refresh(); });
  const prev = root.querySelector("#prev"), next = root.querySelector("#next");
  if (prev) prev.addEventListener("click", () => { teamsState.offset = Math.max(0, teamsState.offset - teamsState.limit); refresh(); });
  if (next) next.addEventListener("click", () => { teamsState.offset += teamsState.limit; refresh(); });
}

async function teamPage(id) {
  let d;
  try { d = await api("/teams/" + encodeURIComponent(id)); } catch (e) {
    if (e instanceof APIError && (e.status === 404 || e.status === 400)) return `<h1>Team ${esc(id)}</h1><div class="notice error">${esc(e.message)}</div>`;
    throw e;
  }
  const t = d.team;
  const q = d.quarantine;
  let html = `<h1>Team ${t.team_id} ${t.outlier ? badge("outlier", "crit") : ""} ${q ? badge("quarantined", "warn") : ""} ${t.bad_rows ? badge(t.bad_rows + " bad rows", "warn") : ""}</h1>`;
  html += `<div class="cards">`;
  html += card("Payload", num(t.payload_bytes, fmtBytes), `flags ${fmtBytes(t.flags_payload_bytes)} · definitions ${fmtBytes(t.definitions_payload_bytes)}`, t.outlier ? "crit" : "", "card-payload");
  html += card("Flags", num(t.flags, fmtCount), `${fmtCount(t.active_flags)} active · ${fmtCount(t.deleted_flags)} deleted`, "", "card-flags");
  html += card("Cohorts", num(t.cohorts, fmtCount), `${fmtBytes(t.cohort_bytes)} of cohort filters`);
  html += card("Naive build", num(t.naive_build_bytes, fmtBytes), "what a load-everything build would hold", "", "card-naive");
  html += card("Last change", esc(ago(t.updated_at)), `measured ${esc(ago(t.measured_at))}`);
  html += `</div>`;

  if (me.can_operate) {
    html += `<div class="panel" id="operate"><h2>Operate</h2>
      <form class="actions" id="operate-form">
        <input id="reason" placeholder="reason (required to quarantine or release)" maxlength="500">
        <button type="button" id="btn-rebuild">Rebuild now</button>
        ${d.engine_enabled ? (q ? `<button type="button" id="btn-release" class="secondary">Release</button>` : `<button type="button" id="btn-quarantine" class="danger">Quarantine</button>`) : ""}
      </form>
      ${q ? `<p class="muted">Quarantined ${esc(ago(q.since))}${q.auto ? " by the engine" : ""}: ${esc(q.reason)}</p>` : ""}
      ${d.engine_enabled ? "" : `<p class="muted">Rebuild engine disabled.</p>`}
    </div>`;
  } else if (q) {
    html += `<div class="notice">Quarantined ${esc(ago(q.since))}${q.auto ? " by the engine" : ""}: ${esc(q.reason)}</div>`;
  }

  html += `<div class="grid cols-2"><div class="panel" id="size-history"><h2>Payload size history</h2>${lineChart(d.history.payload_bytes, { fmt: fmtBytes, label: "payload size", width: 600, height: 220 })}</div>`;
  html += `<div class="panel" id="flag-history"><h2>Active flags history</h2>${lineChart(d.history.flags, { label: "flags", width: 600, height: 220 })}</div></div>`;

  html += `<div class="panel" id="caches"><h2>Cache freshness</h2>`;
  if (d.caches.length === 0) html += `<div class="empty">No cache seen for this team yet.</div>`;
  else {
    html += `<table><thead><tr><th>Cache</th><th>Source</th><th>State</th><th class="r">Size</th><th>Built</th><th class="r">Behind data by</th><th>ETag</th></tr></thead><tbody>`;
    for (const c of d.caches) {
      html += `<tr data-cache="${esc(c.kind)}"><td><b>${esc(c.kind)}</b></td><td>${esc(c.source)}</td>
        <td>${c.missing ? badge("missing", "crit") : c.stale ? badge("stale", "warn") : badge("fresh", "ok")}</td>
        <td class="r">${c.missing ? "–" : num(c.bytes, fmtBytes)}</td><td>${c.missing ? "–" : esc(ago(c.built_at))}</td>
        <td class="r">${c.lag_seconds > 0 ? fmtDuration(c.lag_seconds) : "–"}</td><td class="mono">${esc((c.etag || "").slice(0, 16))}</td></tr>`;
    }
    html += `</tbody></table>`;
  }
  html += `</div>`;
  html += `<div class="panel" id="team-findings"><h2>Findings</h2>${findingList(d.findings, "No active findings for this team.")}</div>`;
  html += `<div class="panel" id="team-rebuilds"><h2>Rebuild history</h2>${d.engine_enabled ? rebuildTable(d.rebuilds, false) : `<div class="empty">Rebuild engine disabled.</div>`}</div>`;
  return html;
}

function bindTeam(root, id) {
  const reason = () => (root.querySelector("#reason") || {}).value || "";
  const act = async (path, body, ok) => {
    try {
      const r = await api(`/teams/${id}/${path}`, { method: "POST", body });
      toast(ok(r));
      refresh();
    } catch (e) { toast(e.message, true); }
  };
  const on = (sel, f) => { const b = root.querySelector(sel); if (b) b.addEventListener("click", f); };
  on("#btn-rebuild", () => act("rebuild", reason() ? { reason: reason() } : {}, (r) => r.message));
  on("#btn-quarantine", () => {
    if (!reason().trim()) { toast("Say why the team is quarantined.", true); return; }
    act("quarantine", { reason: reason() }, () => `Team ${id} quarantined.`);
  });
  on("#btn-release", () => {
    if (!reason().trim()) { toast("Say why the team is released.", true); return; }
    act("release", { reason: reason() }, () => `Team ${id} released.`);
  });
}

function rebuildTable(list, withTeam) {
  if (!list || list.length === 0) return `<div class="empty">No builds yet.</div>`;
  let html = `<table><thead><tr>${withTeam ? "<th>Team</th>" : ""}<th>Finished</th><th>Lane</th><th>Result</th><th class="r">Took</th><th class="r">Peak memory</th><th class="r">Flags</th><th class="r">Flags payload</th><th class="r">Definitions</th></tr></thead><tbody>`;
  for (const b of list) {
    const took = (new Date(b.finished_at) - new Date(b.started_at)) / 1000;
    html += `<tr data-job="${b.job_id}">${withTeam ? `<td><a href="/teams/${b.team_id}" data-link>team ${b.team_id}</a></td>` : ""}
      <td>${isSet(b.finished_at) ? esc(ago(b.finished_at)) : "–"}</td><td>${esc(b.lane)}</td>
      <td>${b.ok ? (b.unchanged ? badge("unchanged", "info") : badge("built", "ok")) : badge("failed", "crit") + ` <span class="err small">${esc(b.error)}</span>`}${b.skipped_flags ? " " + badge(b.skipped_flags + " skipped", "warn") : ""}</td>
      <td class="r num">${isSet(b.started_at) && isSet(b.finished_at) ? fmtDuration(took) : "–"}</td>
      <td class="r">${b.peak_heap_bytes ? num(b.peak_heap_bytes, fmtBytes) : "–"}</td><td class="r">${num(b.flags, fmtCount)}</td>
      <td class="r">${num(b.flags_bytes, fmtBytes)}</td><td class="r">${num(b.definitions_bytes, fmtBytes)}</td></tr>`;
  }
  return html + `</tbody></table>`;
}

async function rebuildsPage() {
  const st = await optional(api("/rebuilds"));
  if (!st) return `<h1>Rebuilds</h1><div class="notice">The rebuild engine is disabled in this deployment (rebuild.enabled: false).</div>`;
  const running = st.lanes.reduce((a, l) => a + l.running, 0);
  const waiting = st.lanes.reduce((a, l) => a + l.waiting, 0);
  const failed = st.recent.filter((b) => !b.ok).length;
  let html = `<h1>Rebuilds</h1><div class="cards">`;
  html += card("Running", num(running, String), `${st.lanes.reduce((a, l) => a + l.workers, 0)} workers`, "", "card-running");
  html += card("Waiting", num(waiting, fmtCount), "builds queued across lanes", waiting > 100 ? "warn" : "", "card-waiting");
  html += card("Memory budget", num(st.budget_in_use_bytes, fmtBytes), `in use of ${fmtBytes(st.budget_bytes)}`, "", "card-budget");
  html += card("Quarantined", num(st.quarantined.length, String), "teams held apart", st.quarantined.length ? "warn" : "ok", "card-quarantined");
  html += card("Recent failures", num(failed, String), `of ${st.recent.length} recent builds`, failed ? "crit" : "ok");
  html += `</div>`;
  html += `<div class="panel" id="lanes"><h2>Lanes</h2>${laneBars(st)}
    <div class="lane"><span class="name">memory</span>${meter(st.budget_in_use_bytes, st.budget_bytes)}<span class="num small">${fmtBytes(st.budget_in_use_bytes)} / ${fmtBytes(st.budget_bytes)}</span></div></div>`;
  html += `<div class="panel" id="quarantined"><h2>Quarantined teams</h2>`;
  if (st.quarantined.length === 0) html += `<div class="empty">No team is quarantined.</div>`;
  else {
    html += `<table><thead><tr><th>Team</th><th>Since</th><th>By</th><th>Reason</th></tr></thead><tbody>`;
    for (const q of st.quarantined) {
      html += `<tr data-team="${q.team_id}"><td><a href="/teams/${q.team_id}" data-link>team ${q.team_id}</a></td><td>${esc(ago(q.since))}</td><td>${q.auto ? "engine" : "operator"}</td><td>${esc(q.reason)}</td></tr>`;
    }
    html += `</tbody></table>`;
  }
  html += `</div><div class="panel" id="recent"><h2>Recent results</h2>${rebuildTable(st.recent, true)}</div>`;
  return html;
}

// ---------- router and refresh ----------

function route() {
  const p = location.pathname;
  let m;
  if (p === "/" || p === "") return { nav: "overview", render: overviewPage };
  if (p === "/teams") return { nav: "teams", render: teamsPage, bind: bindTeams };
  if ((m = p.match(/^\/teams\/([^/]+)$/))) return { nav: "teams", render: () => teamPage(m[1]), bind: (root) => bindTeam(root, m[1]) };
  if (p === "/rebuilds") return { nav: "rebuilds", render: rebuildsPage };
  return { nav: "", render: async () => `<h1>Not found</h1><p><a href="/" data-link>Back to the overview</a></p>` };
}

let lastOK = null;
let generation = 0;

async function refresh() {
  const gen = ++generation;
  const r = route();
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === r.nav));
  const root = document.getElementById("app");
  let html;
  try {
    html = await r.render();
  } catch (e) {
    if (gen !== generation) return;
    if (e instanceof APIError && e.status === 401) {
      html = `<div class="notice error">This server needs an API token to show anything: ${esc(e.message)}. Use the Token button (top right) to paste one.</div>`;
      document.getElementById("auth-panel").hidden = false;
    } else {
      html = `<div class="notice error">Could not load this page: ${esc(e.message)}. Retrying every ${REFRESH_MS / 1000} s.</div>` + (root.dataset.ok ? root.innerHTML : "");
    }
    root.innerHTML = html;
    root.dataset.state = "error";
    return;
  }
  if (gen !== generation) return; // a newer refresh or navigation won
  // Keep what the user is typing across a refresh.
  const typing = document.activeElement && document.activeElement.id === "reason" ? document.activeElement.value : null;
  const y = window.scrollY;
  root.innerHTML = html;
  root.dataset.ok = "1";
  root.dataset.state = "ready";
  if (r.bind) r.bind(root);
  if (typing !== null) { const i = root.querySelector("#reason"); if (i) { i.value = typing; i.focus(); } }
  window.scrollTo(0, y);
  lastOK = Date.now();
  root.dataset.loadedAt = String(lastOK);
  updateClock();
}

function updateClock() {
  document.getElementById("updated").textContent = lastOK ? "updated " + agoSeconds((Date.now() - lastOK) / 1000) : "";
}

function navigate(href) {
  history.pushState(null, "", href);
  window.scrollTo(0, 0);
  refresh();
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-link]");
  if (!a || e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", refresh);

function setupAuth() {
  const panel = document.getElementById("auth-panel");
  const input = document.getElementById("token-input");
  document.getElementById("auth-button").addEventListener("click", () => { panel.hidden = !panel.hidden; if (!panel.hidden) input.focus(); });
  document.getElementById("auth-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = input.value.trim();
    if (v) localStorage.setItem(TOKEN_KEY, v);
    input.value = "";
    await whoami();
    if (me.error) { toast("Token rejected: " + me.error, true); return; }
    panel.hidden = true;
    toast(me.authenticated ? `Using token “${me.name}” (${me.role}).` : "No token saved.");
    refresh();
  });
  document.getElementById("token-clear").addEventListener("click", async () => {
    localStorage.removeItem(TOKEN_KEY);
    await whoami();
    toast("Token forgotten.");
    refresh();
  });
}

(async function main() {
  setupAuth();
  await whoami();
  await refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  setInterval(updateClock, 1000);
})();
