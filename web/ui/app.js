// flagwarden dashboard: a small single-page app over /api/v1, written as ES modules the
// browser loads as they are (no build step). js/api.js is the API client, js/auth.js
// the token, js/charts.js the charts (uPlot, vendored), js/pages/ one module per page,
// js/router.js which page a path shows. The page refreshes its data every 10 s.
import { setupAuth, whoami } from "./js/auth.js";
import { refresh, setupLinks, updateClock, REFRESH_MS } from "./js/router.js";

setupLinks();
setupAuth(refresh);
await whoami();
await refresh();
setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
setInterval(updateClock, 1000);
