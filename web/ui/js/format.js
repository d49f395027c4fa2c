// Formatting for people: bytes in binary units, counts, durations, UTC times, and the
// small HTML pieces every page uses. No state but the server's clock offset.

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

export const KiB = 1024, MiB = 1024 ** 2, GiB = 1024 ** 3;

// bytes: 1,024-based with IEC names, as the config writes memory (512MiB, 8GiB).
export function fmtBytes(n) {
  if (n == null || isNaN(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  const digits = i === 0 || v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return (n < 0 ? "-" : "") + v.toFixed(digits).replace(/\.0+$|(\.\d*[1-9])0+$/, "$1") + " " + units[i];
}

// counts: 1.2k, 3.4M.
export function fmtCount(n) {
  if (n == null || isNaN(n)) return "–";
  const a = Math.abs(n);
  const sign = n < 0 ? "-" : "";
  const one = (v, u) => sign + (v >= 100 ? v.toFixed(0) : v.toFixed(1).replace(/\.0$/, "")) + u;
  if (a >= 1e9) return one(a / 1e9, "B");
  if (a >= 1e6) return one(a / 1e6, "M");
  if (a >= 1e3) return one(a / 1e3, "k");
  return sign + (Number.isInteger(a) ? a : a.toFixed(a < 10 ? 2 : 1).replace(/\.?0+$/, ""));
}

export function fmtDuration(sec) {
  if (sec == null || isNaN(sec)) return "–";
  const s = Math.abs(sec);
  if (s < 1) return (s * 1000).toFixed(0) + " ms";
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0).replace(/\.0$/, "") + " s";
  if (s < 3600) return (s / 60).toFixed(s < 600 ? 1 : 0).replace(/\.0$/, "") + " min";
  if (s < 86400 * 2) return (s / 3600).toFixed(s < 36000 ? 1 : 0).replace(/\.0$/, "") + " h";
  return (s / 86400).toFixed(s < 864000 ? 1 : 0).replace(/\.0$/, "") + " d";
}

export function pct(x) { return (x * 100).toFixed(x < 0.1 ? 1 : 0) + "%"; }

const pad = (n) => String(n).padStart(2, "0");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// Times are UTC and 24-hour everywhere, as in the CLI and Grafana, with the zone said.
export function fmtUTC(ms, withSeconds = false) {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}${withSeconds ? ":" + pad(d.getUTCSeconds()) : ""} UTC`;
}

// An axis tick: the time of day, or the day where the span covers days.
export function fmtUTCTick(ms, spanMs) {
  const d = new Date(ms);
  const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}` + (spanMs < 600e3 ? ":" + pad(d.getUTCSeconds()) : "");
  if (spanMs > 3 * 86400e3) return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]}`;
  if (spanMs > 86400e3 && d.getUTCHours() === 0 && d.getUTCMinutes() === 0) return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]}`;
  return hm;
}

export function isSet(t) { return t && !String(t).startsWith("0001-01-01"); }

// clockOffset is the server's clock minus the browser's, from the X-Flagwarden-Now
// header of the last answer: times are judged against the clock they were measured by.
let clockOffset = 0;
export function setServerNow(ms) { clockOffset = ms - Date.now(); }
export function serverNow() { return Date.now() + clockOffset; }

export function ago(t) {
  if (!isSet(t)) return "never";
  return agoSeconds((serverNow() - new Date(t).getTime()) / 1000);
}

export function agoSeconds(sec) {
  if (sec < -5) return "in " + fmtDuration(-sec);
  if (sec < 5) return "just now";
  return fmtDuration(sec) + " ago";
}

// A time shown as "3 h ago" with its UTC time on hover.
export function when(t) {
  if (!isSet(t)) return "never";
  return `<time datetime="${esc(t)}" title="${esc(fmtUTC(new Date(t).getTime(), true))}">${esc(ago(t))}</time>`;
}

// A number shown to a person, with the raw value kept for machines (and tests).
export function num(v, fmt, cls = "") { return `<span class="num ${cls}" data-value="${esc(v)}">${esc(fmt(v))}</span>`; }

export function badge(text, cls = "") { return `<span class="badge ${cls}">${esc(text)}</span>`; }

export function sevClass(s) { return s === "critical" ? "crit" : "warn"; }
