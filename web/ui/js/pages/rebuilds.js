// The rebuild engine: lanes, memory budget, quarantined teams and recent builds.
import { api, optional } from "../api.js";
import { esc, fmtBytes, fmtCount, num, when } from "../format.js";
import { card, laneBars, memoryLane, rebuildTable } from "../widgets.js";
import { record, lanesChart } from "../lanehistory.js";

export async function rebuildsPage() {
  const st = await optional(api("/rebuilds"));
  if (!st) return `<h1>Rebuilds</h1><div class="notice">The rebuild engine is disabled in this deployment (rebuild.enabled: false).</div>`;
  const here = st.lanes.reduce((a, l) => a + (l.running_here ?? Math.min(l.running, l.workers)), 0);
  const workers = st.lanes.reduce((a, l) => a + l.workers, 0);
  const waiting = st.lanes.reduce((a, l) => a + l.waiting, 0);
  const failed = st.recent.filter((b) => !b.ok).length;
  let html = `<h1>Rebuilds</h1><div class="cards">`;
  html += card("Running", `${num(here, String)}<span class="muted">/${workers}</span>`, "builds in this replica, of its workers", "", "card-running");
  html += card("Waiting", num(waiting, fmtCount), "builds queued across lanes", waiting > 100 ? "warn" : "", "card-waiting");
  html += card("Memory budget", num(st.budget_in_use_bytes, fmtBytes), `reserved of ${fmtBytes(st.budget_bytes)}`, st.budget_in_use_bytes > 0.9 * st.budget_bytes ? "warn" : "", "card-budget");
  html += card("Quarantined", num(st.quarantined.length, String), "teams held apart", st.quarantined.length ? "warn" : "ok", "card-quarantined");
  html += card("Recent failures", num(failed, String), `of ${st.recent.length} recent builds`, failed ? "crit" : "ok");
  html += `</div>`;
  html += `<div class="grid cols-2"><div class="panel" id="lanes"><h2>Lanes</h2>${laneBars(st)}${memoryLane(st)}
    <p class="muted small">A lane with every worker busy is working as meant; the waiting count and the findings say when it falls behind.</p></div>`;
  html += `<div class="panel" id="lane-history"><h2>Lanes over time</h2>${lanesChart(st, record(st))}</div></div>`;
  html += `<div class="panel" id="quarantined"><h2>Quarantined teams</h2>`;
  if (st.quarantined.length === 0) html += `<div class="empty">No team is quarantined.</div>`;
  else {
    html += `<div class="table-wrap"><table><thead><tr><th>Team</th><th>Since</th><th>By</th><th>Reason</th></tr></thead><tbody>`;
    for (const q of st.quarantined) {
      html += `<tr data-team="${q.team_id}"><td><a href="/teams/${q.team_id}" data-link>team ${q.team_id}</a></td><td>${when(q.since)}</td><td>${q.auto ? "engine" : "operator"}</td><td class="wrap">${esc(q.reason)}</td></tr>`;
    }
    html += `</tbody></table></div>`;
  }
  html += `</div><div class="panel" id="recent"><h2>Recent results</h2><div class="table-wrap">${rebuildTable(st.recent, true)}</div>
    <p class="muted small">Memory bound is what each build reserved of the budget before it started (its size estimate); the process heap peak is the whole process's, other builds included.</p></div>`;
  return html;
}
