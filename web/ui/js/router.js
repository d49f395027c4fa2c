// The router: which page a path shows, and refresh(), which renders it again without a
// reload, keeping scroll position and what the user is typing.
import { APIError } from "./api.js";
import { esc, agoSeconds } from "./format.js";
import { mountCharts } from "./charts.js";
import { showAuthPanel } from "./auth.js";
import { overviewPage } from "./pages/overview.js";
import { teamsPage, bindTeams } from "./pages/teams.js";
import { teamPage, bindTeam } from "./pages/team.js";
import { rebuildsPage } from "./pages/rebuilds.js";

export const REFRESH_MS = 10000;

function route() {
  const p = location.pathname;
  let m;
  if (p === "/" || p === "") return { nav: "overview", render: overviewPage };
  if (p === "/teams") return { nav: "teams", render: teamsPage, bind: (root) => bindTeams(root, refresh) };
  if ((m = p.match(/^\/teams\/([^/]+)$/))) return { nav: "teams", render: () => teamPage(m[1]), bind: (root) => bindTeam(root, m[1], refresh) };
  if (p === "/rebuilds") return { nav: "rebuilds", render: rebuildsPage };
  return { nav: "", render: async () => `<h1>Not found</h1><p><a href="/" data-link>Back to the overview</a></p>` };
}

let lastOK = null;
let generation = 0;

export async function refresh() {
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
      showAuthPanel();
      root.innerHTML = html;
    } else {
      // Keep the last good page under the error, charts included.
      const notice = root.querySelector(":scope > .notice.refresh-error") || document.createElement("div");
      notice.className = "notice error refresh-error";
      notice.textContent = `Could not load this page: ${e.message}. Retrying every ${REFRESH_MS / 1000} s.`;
      if (root.dataset.ok) root.prepend(notice); else { root.innerHTML = ""; root.append(notice); }
    }
    root.dataset.state = "error";
    return;
  }
  if (gen !== generation) return; // a newer refresh or navigation won
  const typing = document.activeElement && document.activeElement.id === "reason" ? document.activeElement.value : null;
  const y = window.scrollY;
  root.innerHTML = html;
  mountCharts(root);
  root.dataset.ok = "1";
  root.dataset.state = "ready";
  if (r.bind) r.bind(root);
  if (typing !== null) { const i = root.querySelector("#reason"); if (i) { i.value = typing; i.focus(); } }
  window.scrollTo(0, y);
  lastOK = Date.now();
  root.dataset.loadedAt = String(lastOK);
  updateClock();
}

export function updateClock() {
  document.getElementById("updated").textContent = lastOK ? "updated " + agoSeconds((Date.now() - lastOK) / 1000) : "";
}

function navigate(href) {
  history.pushState(null, "", href);
  window.scrollTo(0, 0);
  refresh();
}

export function setupLinks() {
  document.addEventListener("click", (e) => {
    const a = e.target.closest("a[data-link]");
    if (!a || e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    navigate(a.getAttribute("href"));
  });
  window.addEventListener("popstate", refresh);
}
