// One team: its size and history, its caches, findings and builds, and (for an operate
// token) the rebuild, quarantine and release buttons.
import { api, APIError } from "../api.js";
import { esc, fmtBytes, fmtCount, fmtDuration, num, badge, when } from "../format.js";
import { timeChart, COLORS } from "../charts.js";
import { card, findingList, rebuildTable } from "../widgets.js";
import { me } from "../auth.js";
import { toast } from "../toast.js";

function cachesPanel(d, q) {
  let html = `<div class="panel" id="caches"><h2>Cache freshness</h2>`;
  if (d.caches.length === 0) {
    // A quarantined team with no cache is a team PostHog serves nothing for: say so in
    // the warning colour rather than as a neutral "nothing yet".
    html += q
      ? `<div class="notice warn" data-state="quarantined-no-cache">No cache of this team exists, and the team is quarantined: its builds wait in the quarantine lane until it is released.</div>`
      : `<div class="empty">No cache seen for this team yet.</div>`;
    return html + `</div>`;
  }
  html += `<div class="table-wrap"><table><thead><tr><th>Cache</th><th>Source</th><th>State</th><th class="r">Size</th><th>Built</th><th class="r">Behind data by</th><th>ETag</th></tr></thead><tbody>`;
  for (const c of d.caches) {
    html += `<tr data-cache="${esc(c.kind)}"><td><b>${esc(c.kind)}</b></td><td>${esc(c.source)}</td>
      <td>${c.missing ? badge("missing", "crit") : c.stale ? badge("stale", "warn") : badge("fresh", "ok")}</td>
      <td class="r">${c.missing ? "–" : num(c.bytes, fmtBytes)}</td><td>${c.missing ? "–" : when(c.built_at)}</td>
      <td class="r">${c.lag_seconds > 0 ? fmtDuration(c.lag_seconds) : "–"}</td><td class="mono">${esc((c.etag || "").slice(0, 16))}</td></tr>`;
  }
  return html + `</tbody></table></div></div>`;
}

export async function teamPage(id) {
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
  html += card("Last change", when(t.updated_at), `measured ${when(t.measured_at)}`);
  html += `</div>`;

  if (me.can_operate) {
    html += `<div class="panel" id="operate"><h2>Operate</h2>
      <form class="actions" id="operate-form">
        <input id="reason" placeholder="reason (required to quarantine or release)" maxlength="500">
        <button type="button" id="btn-rebuild">Rebuild now</button>
        ${d.engine_enabled ? (q ? `<button type="button" id="btn-release" class="secondary">Release</button>` : `<button type="button" id="btn-quarantine" class="danger">Quarantine</button>`) : ""}
      </form>
      ${q ? `<p class="muted">Quarantined ${when(q.since)}${q.auto ? " by the engine" : ""}: ${esc(q.reason)}</p>` : ""}
      ${d.engine_enabled ? "" : `<p class="muted">Rebuild engine disabled.</p>`}
    </div>`;
  } else if (q) {
    html += `<div class="notice warn">Quarantined ${when(q.since)}${q.auto ? " by the engine" : ""}: ${esc(q.reason)}</div>`;
  }

  html += `<div class="grid cols-2"><div class="panel" id="size-history"><h2>Payload size history</h2>${timeChart({
    title: "Payload size of team " + t.team_id, yLabel: "Payload, both caches", unit: "bytes", height: 220,
    series: [{ label: "payload", color: COLORS.line, fill: "rgba(31,111,235,.08)", points: d.history.payload_bytes }],
  })}</div>`;
  html += `<div class="panel" id="flag-history"><h2>Active flags history</h2>${timeChart({
    title: "Active flags of team " + t.team_id, yLabel: "Active flags (count)", unit: "count", height: 220,
    series: [{ label: "active flags", color: COLORS.violet, points: d.history.flags }],
  })}</div></div>`;

  html += cachesPanel(d, q);
  html += `<div class="panel" id="team-findings"><h2>Findings</h2>${findingList(d.findings, "No active findings for this team.")}</div>`;
  html += `<div class="panel" id="team-rebuilds"><h2>Rebuild history</h2>${d.engine_enabled ? `<div class="table-wrap">${rebuildTable(d.rebuilds, false)}</div>` : `<div class="empty">Rebuild engine disabled.</div>`}</div>`;
  return html;
}

export function bindTeam(root, id, refresh) {
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
