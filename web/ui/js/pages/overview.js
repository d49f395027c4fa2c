// The overview: is anything wrong, and where. Cards first (coloured by what the
// detectors and the pods say), then findings, worker health, queues, lanes and caches.
import { api, optional } from "../api.js";
import { esc, fmtBytes, fmtCount, fmtDuration, pct, num, badge, when, isSet } from "../format.js";
import { timeChart, COLORS } from "../charts.js";
import { card, findingList, etaText, queueState, workersCardClass, laneBars, memoryLane, findingsClass, worse, BACKLOG_KINDS, CACHE_KINDS } from "../widgets.js";
import { record, lanesChart } from "../lanehistory.js";

const sec = (t) => new Date(t).getTime() / 1000;

export function queueChart(q, limit) {
  const pts = q.history || [];
  const state = queueState(q);
  const series = [{ label: "depth", color: COLORS.line, fill: "rgba(31,111,235,.08)", points: pts }];
  let projectTo, nowAt;
  if (q.trend && pts.length > 1) {
    const x0 = sec(pts[0].t), xNow = sec(pts[pts.length - 1].t);
    projectTo = xNow + (xNow - x0) / 4;
    nowAt = xNow;
    const anchor = sec(q.trend.anchor);
    const at = (t) => Math.max(0, q.trend.intercept + q.trend.slope_per_hour * (t - anchor) / 3600);
    // The line is a drawing of the window; its colour is the backlog detector's
    // judgment: red and dashed only when the detector's ETA to the limit is under two
    // days, a steady or unjudged queue's line is a quiet grey.
    const quiet = { color: COLORS.muted, dash: [2, 4], label: q.trend.slope_per_hour < 0 ? "trend line (draining)" : "trend line (steady)" };
    const look = { alarm: { color: COLORS.crit, dash: [6, 4], label: "trend line (detector: reaches the limit)" },
      rising: { color: COLORS.warn, dash: [6, 4], label: "trend line (detector: rising)" },
      steady: quiet, none: quiet }[state];
    series.push({ label: look.label, color: look.color, dash: look.dash, width: 1.5, at, points: pts });
  }
  if (state === "alarm") series.push({ label: "limit", color: COLORS.crit, dash: [2, 3], width: 1, at: () => limit, points: pts });
  return timeChart({ title: "Depth of " + q.name, yLabel: "Messages (count)", unit: "count", series, projectTo, nowAt, height: 200 });
}

export function workerChart(n, windowSeconds) {
  return timeChart({
    title: `Worker health in ${n.namespace}`, yLabel: "Pods, events (count)", unit: "count", height: 210,
    empty: `No worker history in ${n.namespace} yet.`,
    series: [
      { label: "ready", color: COLORS.ok, points: n.ready_history },
      { label: "pods", color: COLORS.muted, dash: [2, 3], width: 1, points: n.total_history || [] },
      { label: "crash-looping", color: COLORS.crit, points: n.crashloop_history || [] },
      { label: "OOM kills", color: COLORS.violet, width: 2.5, points: n.oom_kill_history },
      { label: "restarts", color: COLORS.warn, dash: [5, 3], points: n.restart_history || [] },
    ],
  }) + `<p class="muted small">Kills and restarts are counted between two looks at the pods; the last ${esc(fmtDuration(windowSeconds))} shown.</p>`;
}

export function cacheChart(c) {
  return timeChart({
    title: "Cache staleness", yLabel: "Lag behind data", unit: "seconds", height: 190,
    empty: c && c.collected ? "No staleness history yet." : "The cache collector has not reported yet.",
    minMax: c ? c.stale_after_seconds : 0,
    series: [
      { label: "p99 lag", color: COLORS.line, points: (c && c.history.lag_p99_seconds) || [] },
      { label: "largest lag", color: COLORS.warn, points: (c && c.history.lag_max_seconds) || [] },
      ...(c ? [{ label: "stale after", color: COLORS.crit, dash: [2, 3], width: 1, at: () => c.stale_after_seconds, points: c.history.lag_p99_seconds }] : []),
    ],
  });
}

export async function overviewPage() {
  const params = new URLSearchParams(location.search);
  const selected = params.get("queue");
  const [findings, queues, pods, engine, collectors, caches] = await Promise.all([
    api("/findings?limit=20"), api("/queues"), api("/pods"), optional(api("/rebuilds")), api("/collectors"), optional(api("/caches")),
  ]);
  const crit = findings.active.filter((f) => f.severity === "critical").length;
  const deepest = queues.queues[0];
  const sum = (f) => pods.namespaces.reduce((a, n) => a + f(n), 0);
  const w = {
    active: findings.active, total: sum((n) => n.total), ready: sum((n) => n.ready), crashing: sum((n) => n.crashlooping),
    ooms: sum((n) => n.oom_kills_in_window), lastOOM: sum((n) => n.last_terminated_oomkilled), restarts: sum((n) => n.restarts_in_window),
  };
  const window = fmtDuration(pods.window_seconds);
  const up = collectors.collectors.filter((c) => c.up).length;

  let html = `<h1>Overview</h1><div class="cards">`;
  html += card("Active findings", num(findings.active.length, String), findings.enabled ? `${crit} critical` : "detectors disabled", crit ? "crit" : findings.active.length ? "warn" : "ok", "card-findings");
  html += card("Deepest queue", deepest ? num(deepest.depth, fmtCount) : "–", deepest ? `${esc(deepest.name)} · ${etaText(deepest, queues.backlog_limit)}` : "no queues seen", worse(findingsClass(findings.active, BACKLOG_KINDS), deepest && queueState(deepest) === "alarm" ? "warn" : ""), "card-queue");
  const oomLine = w.ooms > 0
    ? `<b class="err" data-field="oom-kills" data-value="${w.ooms}">${fmtCount(w.ooms)} OOM kill${w.ooms === 1 ? "" : "s"}</b> in the last ${esc(window)}`
    : `<span data-field="oom-kills" data-value="0">no OOM kills</span> in the last ${esc(window)}`;
  html += card("Workers ready", `${num(w.ready, String)}<span class="muted">/${w.total}</span>`,
    `${oomLine} · ${w.crashing} crash-looping · ${fmtCount(w.restarts)} restarts`, workersCardClass(w), "card-workers");
  html += engine
    ? card("Rebuild memory", num(engine.budget_in_use_bytes, fmtBytes), `of ${fmtBytes(engine.budget_bytes)} budget · ${engine.quarantined.length} quarantined`, engine.budget_in_use_bytes > 0.9 * engine.budget_bytes ? "warn" : "", "card-budget")
    : card("Rebuild engine", "off", "disabled in this deployment");
  if (caches && caches.collected) {
    const bad = caches.stale + caches.missing;
    html += card("Caches behind", num(bad, fmtCount), `${fmtCount(caches.stale)} stale · ${fmtCount(caches.missing)} missing of ${fmtCount(caches.caches)}`,
      worse(findingsClass(findings.active, CACHE_KINDS), caches.missing ? "crit" : bad ? "warn" : "ok"), "card-caches");
  } else {
    html += card("Caches behind", "–", "the cache collector has not reported", findingsClass(findings.active, CACHE_KINDS), "card-caches");
  }
  html += card("Collectors up", `${num(up, String)}<span class="muted">/${collectors.collectors.length}</span>`, up < collectors.collectors.length ? "some collectors are failing" : "all passing", up < collectors.collectors.length ? "crit" : "ok", "card-collectors");
  html += `</div>`;

  html += `<div class="panel" id="findings"><h2>Active findings</h2>${findings.enabled ? findingList(findings.active, "Nothing is wrong right now.") : `<div class="empty">Detectors are disabled.</div>`}</div>`;

  html += `<div class="panel" id="workers"><h2>Worker health</h2>`;
  if (!pods.collected) html += `<div class="empty">The pod collector has not reported yet.</div>`;
  for (const n of pods.namespaces) {
    html += `<div class="facts" data-namespace="${esc(n.namespace)}"><b>${esc(n.namespace)}</b>: <b data-field="ready">${n.ready}</b>/${n.total} ready ·
      ${n.crashlooping ? badge(n.crashlooping + " CrashLoopBackOff", "crit") : badge("no crash loops", "ok")}
      ${n.last_terminated_oomkilled ? badge(n.last_terminated_oomkilled + " last killed by OOM", "crit") : ""}
      ${n.oom_kills_in_window ? badge(fmtCount(n.oom_kills_in_window) + " OOM kills in " + window, "crit") : ""}
      · ${fmtCount(n.restarts_in_window)} restarts in the last ${esc(window)}
      ${n.max_memory_ratio ? `· memory up to ${pct(n.max_memory_ratio)} of limit` : ""}</div>`;
    html += workerChart(n, pods.window_seconds);
  }
  if (pods.pods.length) {
    html += `<div class="table-wrap"><table class="pods"><thead><tr><th>Pod</th><th>Ready</th><th class="r">Restarts</th><th>State</th><th>Last exit</th></tr></thead><tbody>`;
    for (const p of pods.pods.slice(0, 12)) {
      html += `<tr><td class="mono">${esc(p.name)}</td><td>${p.ready ? badge("ready", "ok") : badge("not ready", "crit")}</td>
        <td class="r num">${p.restarts}${p.restart_delta ? ` <span class="err">+${p.restart_delta}</span>` : ""}</td>
        <td>${p.waiting ? badge(p.waiting, p.waiting === "CrashLoopBackOff" ? "crit" : "warn") : esc(p.phase)}</td>
        <td>${p.last_termination ? `${p.last_termination === "OOMKilled" ? badge("OOMKilled", "crit") : esc(p.last_termination)} (exit ${p.last_exit_code})${isSet(p.last_terminated_at) ? " " + when(p.last_terminated_at) : ""}` : "–"}</td></tr>`;
    }
    html += `</tbody></table></div>`;
    if (pods.pods.length > 12) html += `<div class="muted small">and ${pods.pods.length - 12} more</div>`;
  }
  html += `</div>`;

  html += `<div class="panel" id="queues"><h2>Queues</h2>`;
  if (!queues.collected) html += `<div class="empty">The Celery collector has not reported yet.</div>`;
  for (const q of queues.queues) {
    const prios = Object.entries(q.by_priority || {}).sort((a, b) => a[0] - b[0]).map(([p, n]) => `p${esc(p)} <b>${fmtCount(n)}</b>`).join(" · ");
    const comp = q.composition || {};
    const tasks = Object.entries(comp.by_task || {}).sort((a, b) => b[1] - a[1]).slice(0, 3).map(([t, n]) => `${esc(t.split(".").pop())} ${n}`).join(", ");
    html += `<div class="queue ${q.name === selected ? "selected" : ""}" data-queue="${esc(q.name)}" data-trend="${queueState(q)}">
      <h3>${esc(q.name)} ${q.bound ? "" : badge("undeclared")}</h3>
      <div class="facts">
        <span>depth <b data-field="depth" data-value="${q.depth}">${fmtCount(q.depth)}</b></span>
        <span>${prios || "no priority lists"}</span>
        <span>unacked <b data-field="unacked" data-value="${q.unacked}">${fmtCount(q.unacked)}</b></span>
        <span>overdue <b data-field="overdue" data-value="${q.overdue}">${fmtCount(q.overdue)}</b></span>
        <span>oldest <b>${q.oldest_age_seconds ? fmtDuration(q.oldest_age_seconds) : "–"}</b></span>
        ${comp.sampled ? `<span>sample of ${comp.sampled}: ${tasks || "–"} · ${comp.distinct_teams} teams · <b>${pct(comp.duplicate_ratio)}</b> duplicates</span>` : ""}
      </div>
      <div class="facts">${etaText(q, queues.backlog_limit)}</div>
      ${queueChart(q, queues.backlog_limit)}
    </div>`;
  }
  html += `</div>`;

  html += `<div class="grid cols-2"><div class="panel" id="lanes"><h2>Rebuild lanes</h2>`;
  if (engine) {
    html += laneBars(engine) + memoryLane(engine);
    html += lanesChart(engine, record(engine), 170);
    html += `<p class="muted small"><a href="/rebuilds" data-link>All rebuilds →</a></p>`;
  } else {
    html += `<div class="empty">Rebuild engine disabled.</div>`;
  }
  html += `</div><div class="panel" id="cache-staleness"><h2>Cache staleness</h2>`;
  if (caches && caches.collected) {
    html += `<div class="facts"><span>largest lag now <b data-field="max-lag" data-value="${caches.max_lag_seconds}">${caches.max_lag_seconds > 0 ? fmtDuration(caches.max_lag_seconds) : "none"}</b></span>
      <span>stale after <b>${fmtDuration(caches.stale_after_seconds)}</b></span><span>measured ${when(caches.at)}</span></div>`;
  }
  html += cacheChart(caches) + `</div></div>`;

  html += `<div class="panel" id="collectors"><h2>Collectors</h2><div class="table-wrap"><table><thead><tr><th>Loop</th><th>Status</th><th>Last success</th><th class="r">Passes</th><th class="r">Failures</th><th class="r">Missed</th><th class="r">Last pass</th><th>Last error</th></tr></thead><tbody>`;
  for (const c of collectors.collectors) {
    html += `<tr data-collector="${esc(c.name)}"><td><b>${esc(c.name)}</b></td><td>${c.up ? badge("up", "ok") : badge("down", "crit")}</td>
      <td>${when(c.last_success)}</td><td class="r num">${fmtCount(c.passes)}</td><td class="r num">${fmtCount(c.failures)}</td>
      <td class="r num">${fmtCount(c.missed_iterations)}</td><td class="r num">${fmtDuration(c.last_pass_seconds)}</td>
      <td class="err small wrap">${esc(c.last_error || "")}</td></tr>`;
  }
  if (collectors.collectors.length === 0) html += `<tr><td colspan="8" class="empty">No loops run in this process.</td></tr>`;
  html += `</tbody></table></div></div>`;
  return html;
}
