// The teams page: how team sizes are distributed and which teams are largest.
import { api } from "../api.js";
import { esc, fmtBytes, fmtCount, num, badge, when, MiB, GiB } from "../format.js";
import { histogram } from "../charts.js";
import { card } from "../widgets.js";

const state = { sort: "payload_bytes", order: "desc", offset: 0, limit: 25, min: "" };

// Size filters in binary units, like every other size on the dashboard.
const MIN_SIZES = [["", "any size"], [String(MiB), "1 MiB"], [String(10 * MiB), "10 MiB"], [String(100 * MiB), "100 MiB"], [String(GiB), "1 GiB"]];

export async function teamsPage() {
  const q = new URLSearchParams({ sort: state.sort, order: state.order, offset: state.offset, limit: state.limit });
  if (state.min) q.set("min_bytes", state.min);
  const [dist, page] = await Promise.all([api("/teams/distribution"), api("/teams?" + q)]);
  let html = `<h1>Teams</h1><div class="cards">`;
  html += card("Teams measured", num(dist.teams, fmtCount), dist.collected ? `measured ${when(dist.at)}` : "not measured yet", "", "card-teams");
  html += card("Median payload", num(dist.p50_bytes, fmtBytes), "p50 of team payload sizes");
  html += card("p99 payload", num(dist.p99_bytes, fmtBytes), "99% of teams are smaller");
  html += card("Largest payload", num(dist.max_bytes, fmtBytes), dist.p50_bytes ? `${fmtCount(dist.max_bytes / dist.p50_bytes)}× the median` : "", dist.outliers.length ? "crit" : "", "card-largest");
  html += `</div>`;
  html += `<div class="panel" id="distribution"><h2>Payload size distribution</h2>
    ${histogram(dist.buckets, { outliers: dist.outliers, limitBytes: dist.naive_limit_payload_bytes, limitLabel: "naive build > worker memory" })}
    <p class="muted small">Each bar counts the teams whose payload falls in a 4× size range; red bars hold outliers. The dashed line is where a load-everything build (${esc(dist.naive_build_factor)}× both caches' payloads) exceeds the ${esc(fmtBytes(dist.worker_memory_limit_bytes))} worker limit.</p>
    ${dist.outliers.length ? `<div class="facts">Outliers: ${dist.outliers.map((t) => `<a href="/teams/${t.team_id}" data-link>team ${t.team_id}</a> (${fmtBytes(t.payload_bytes)})`).join(", ")}</div>` : ""}
  </div>`;
  const col = (key, label, right = true) => {
    const on = state.sort === key;
    const arrow = on ? (state.order === "desc" ? " ↓" : " ↑") : "";
    return `<th class="${right ? "r" : ""}"><a href="#" class="sort ${on ? "on" : ""}" data-sort="${key}">${esc(label)}${arrow}</a></th>`;
  };
  html += `<div class="panel" id="top-teams"><h2>Top teams</h2>
    <form class="filters" id="team-filter"><label>At least <select id="min-bytes">
      ${MIN_SIZES.map(([v, l]) => `<option value="${v}" ${state.min === v ? "selected" : ""}>${l}</option>`).join("")}
    </select></label><span class="muted">${fmtCount(page.total)} teams match</span></form>
    <div class="table-wrap"><table><thead><tr>${col("team_id", "Team", false)}${col("payload_bytes", "Payload")}<th class="r">Naive build</th>${col("flags", "Flags")}${col("cohorts", "Cohorts")}${col("filters_bytes", "Filters")}${col("updated_at", "Changed")}<th>Marks</th></tr></thead><tbody>`;
  for (const t of page.teams) {
    html += `<tr data-team="${t.team_id}"><td><a href="/teams/${t.team_id}" data-link>team ${t.team_id}</a></td>
      <td class="r">${num(t.payload_bytes, fmtBytes)}</td><td class="r">${num(t.naive_build_bytes, fmtBytes)}</td>
      <td class="r">${num(t.flags, fmtCount)}</td><td class="r">${num(t.cohorts, fmtCount)}</td><td class="r">${num(t.filters_bytes, fmtBytes)}</td>
      <td class="r muted">${when(t.updated_at)}</td>
      <td>${t.outlier ? badge("outlier", "crit") : ""} ${t.quarantined ? badge("quarantined", "warn") : ""} ${t.bad_rows ? badge(t.bad_rows + " bad rows", "warn") : ""}</td></tr>`;
  }
  if (page.teams.length === 0) html += `<tr><td colspan="8" class="empty">No teams.</td></tr>`;
  const from = page.total ? page.offset + 1 : 0, to = page.offset + page.teams.length;
  html += `</tbody></table></div><div class="pager"><span class="muted">${from}–${to} of ${fmtCount(page.total)}</span>
    <button class="secondary" id="prev" ${page.offset === 0 ? "disabled" : ""}>Previous</button>
    <button class="secondary" id="next" ${to >= page.total ? "disabled" : ""}>Next</button></div></div>`;
  return html;
}

export function bindTeams(root, refresh) {
  root.querySelectorAll("a.sort").forEach((a) => a.addEventListener("click", (e) => {
    e.preventDefault();
    const k = a.dataset.sort;
    if (state.sort === k) state.order = state.order === "desc" ? "asc" : "desc";
    else { state.sort = k; state.order = k === "team_id" ? "asc" : "desc"; }
    state.offset = 0;
    refresh();
  }));
  const sel = root.querySelector("#min-bytes");
  if (sel) sel.addEventListener("change", () => { state.min = sel.value; state.offset = 0; refresh(); });
  const prev = root.querySelector("#prev"), next = root.querySelector("#next");
  if (prev) prev.addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); refresh(); });
  if (next) next.addEventListener("click", () => { state.offset += state.limit; refresh(); });
}
