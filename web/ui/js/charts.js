// Charts. Time series are drawn with uPlot (vendored, see ui/vendor/uplot/VERSION):
// every chart has axis titles with units, a hover readout (the legend under it shows
// the values at the cursor), UTC 24-hour time, and ticks at round values in the unit
// shown (bytes at round binary sizes, durations at round minutes and hours).
//
// Pages render HTML strings, so a chart is first a placeholder (timeChart returns its
// HTML) and mountCharts(root) draws every placeholder once the HTML is in the page.
import uPlot from "../vendor/uplot/uPlot.esm.js";
import { esc, fmtBytes, fmtCount, fmtDuration, fmtUTC, fmtUTCTick, ago, KiB, MiB, GiB } from "./format.js";

const COLORS = {
  line: "#1f6feb", ok: "#1e7f4f", warn: "#b7791f", crit: "#c9372c", muted: "#8a99ab", violet: "#7c3aed", teal: "#0f766e",
};
export { COLORS };

// Tick steps per unit. uPlot picks the smallest step that leaves room between labels, so
// the labels are multiples of these: 0, 256 MiB, 512 MiB rather than 191, 381, 572 MiB.
const decades = (mults, from, to) => {
  const out = [];
  for (let p = from; p <= to; p++) for (const m of mults) out.push(m * 10 ** p);
  return out;
};
const COUNT_INCRS = decades([1, 2, 5], 0, 9);
const BYTE_INCRS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512].flatMap((m) => [m, m * KiB, m * MiB, m * GiB])
  .concat([1024 * GiB, 2048 * GiB]).sort((a, b) => a - b);
const SECOND_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400];

export const UNITS = {
  count: { fmt: fmtCount, incrs: COUNT_INCRS, size: 56 },
  bytes: { fmt: fmtBytes, incrs: BYTE_INCRS, size: 72 },
  seconds: { fmt: (v) => (v === 0 ? "0" : fmtDuration(v)), incrs: SECOND_INCRS, size: 64 },
};

let seq = 0;
const pending = new Map();
let live = [];

// Data aligned on the union of the series' timestamps (uPlot wants one x array), in
// seconds; a series without a point at some x has null there and its line spans it.
function align(series, extraXs) {
  const xs = new Set(extraXs);
  for (const s of series) for (const p of s.points || []) xs.add(Math.round(new Date(p.t).getTime() / 1000));
  const x = [...xs].sort((a, b) => a - b);
  const index = new Map(x.map((v, i) => [v, i]));
  const ys = series.map((s) => {
    if (s.at) return x.map((t) => s.at(t));
    const col = new Array(x.length).fill(null);
    for (const p of s.points || []) col[index.get(Math.round(new Date(p.t).getTime() / 1000))] = p.v;
    return col;
  });
  return [x, ...ys];
}

// timeChart returns the HTML of a chart of spec:
//   title     what the chart shows (its aria label and caption)
//   yLabel    the y axis title, with its unit ("Messages waiting", "Payload size")
//   unit      "count", "bytes" or "seconds": the tick steps and value format
//   series    [{label, points: [{t, v}], color, dash, fill, at: (sec) => value}]
//   projectTo seconds since the epoch the x axis runs to past the data (a projection)
//   nowAt     seconds since the epoch where a "now" line is drawn
//   height    pixels (default 200)
export function timeChart(spec) {
  const withPoints = spec.series.filter((s) => (s.points || []).length > 0);
  const most = Math.max(0, ...withPoints.map((s) => s.points.length));
  if (most === 0) return `<div class="empty">${esc(spec.empty || "No history yet.")}</div>`;
  if (most === 1) {
    const s = withPoints[0], p = s.points[0];
    const fmt = (UNITS[spec.unit] || UNITS.count).fmt;
    return `<div class="empty">One measurement so far: <b>${esc(fmt(p.v))}</b> ${esc(s.label)} ${esc(ago(p.t))}. The chart appears from the second.</div>`;
  }
  const id = "chart-" + ++seq;
  pending.set(id, spec);
  return `<figure class="tchart" data-chart="${id}" data-y-axis="${esc(spec.yLabel)}" data-x-axis="Time (UTC)" aria-label="${esc(spec.title)}">
    <div class="plot" role="img" aria-label="${esc(spec.title)}: ${esc(spec.yLabel)} over time (UTC)"></div></figure>`;
}

function nowLine(at) {
  return (u) => {
    const x = u.valToPos(at, "x", true);
    if (!(x >= u.bbox.left && x <= u.bbox.left + u.bbox.width)) return;
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = COLORS.muted;
    ctx.setLineDash([2, 3]);
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.fillStyle = COLORS.muted;
    ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
    ctx.fillText("now", x + 4, u.bbox.top + 12 * devicePixelRatio);
    ctx.restore();
  };
}

function build(el, spec) {
  const unit = UNITS[spec.unit] || UNITS.count;
  const plot = el.querySelector(".plot");
  const extra = spec.projectTo ? [Math.round(spec.projectTo)] : [];
  const data = align(spec.series, extra);
  const span = (data[0][data[0].length - 1] - data[0][0]) * 1000;
  const width = Math.max(plot.clientWidth || el.clientWidth || 300, 200);
  const opts = {
    width, height: spec.height || 200,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    cursor: { points: { size: 7 }, y: false },
    legend: { live: true },
    scales: {
      x: { time: true },
      y: {
        range: (u, lo, hi) => {
          lo = Math.min(0, lo ?? 0);
          hi = Math.max(hi ?? 0, spec.minMax || 0);
          if (hi <= lo) hi = lo + (spec.unit === "bytes" ? MiB : 1);
          return [lo, hi + (hi - lo) * 0.08];
        },
      },
    },
    axes: [
      {
        label: "Time (UTC)", labelSize: 18, labelFont: "600 12px system-ui, sans-serif", font: "11px system-ui, sans-serif",
        stroke: "#66768a", grid: { stroke: "#edf1f5" }, ticks: { stroke: "#dde3ea" },
        values: (u, splits) => splits.map((s) => fmtUTCTick(s * 1000, span)),
      },
      {
        label: spec.yLabel, labelSize: 18, labelFont: "600 12px system-ui, sans-serif", font: "11px system-ui, sans-serif",
        stroke: "#66768a", grid: { stroke: "#edf1f5" }, ticks: { stroke: "#dde3ea" }, size: unit.size,
        incrs: unit.incrs, values: (u, splits) => splits.map((v) => unit.fmt(v)),
      },
    ],
    series: [
      { label: "Time", value: (u, v) => (v == null ? "–" : fmtUTC(v * 1000)) },
      ...spec.series.map((s) => ({
        label: s.label,
        stroke: s.color || COLORS.line,
        width: s.width || 2,
        dash: s.dash,
        fill: s.fill,
        spanGaps: true,
        points: { show: false },
        value: (u, v) => (v == null ? "–" : unit.fmt(v)),
      })),
    ],
    hooks: spec.nowAt ? { draw: [nowLine(spec.nowAt)] } : {},
  };
  const u = new uPlot(opts, data, plot);
  el.__uplot = u; // for the browser tests and for a person poking at the console
  const ro = new ResizeObserver(() => {
    const w = plot.clientWidth;
    if (w > 0 && Math.abs(w - u.width) > 2) u.setSize({ width: w, height: u.height });
  });
  ro.observe(plot);
  return { u, ro };
}

// mountCharts draws the charts whose placeholders are now in root, and drops those of
// the page that was there before.
export function mountCharts(root) {
  for (const c of live) { c.ro.disconnect(); c.u.destroy(); }
  live = [];
  for (const el of root.querySelectorAll("figure.tchart[data-chart]")) {
    const spec = pending.get(el.dataset.chart);
    if (spec) live.push(build(el, spec));
  }
  pending.clear();
  for (const svg of root.querySelectorAll("svg.histogram")) bindHistogram(svg);
}

// histogram draws size bins on a log x axis; counts use a log scale too so a bin with
// one team is visible beside one with thousands. Outlier bins are red. Hovering a bar
// shows its range and count in the readout under the chart.
export function histogram(buckets, o = {}) {
  const W = 1200, H = 270, L = 64, R = 16, T = 16, B = 58;
  if (!buckets || buckets.length === 0) return `<div class="empty">No teams measured yet.</div>`;
  const n = buckets.length;
  const maxC = Math.max(1, ...buckets.map((b) => b.count));
  const bw = (W - L - R) / n;
  const sy = (c) => T + (1 - Math.log10(c + 1) / Math.log10(maxC + 1)) * (H - T - B);
  const inBin = (t, b) => t.payload_bytes >= b.lower_bytes && t.payload_bytes < b.upper_bytes;
  const outlierBins = new Set();
  for (const t of o.outliers || []) buckets.forEach((b, i) => { if (inBin(t, b)) outlierBins.add(i); });
  let s = `<svg class="chart histogram" viewBox="0 0 ${W} ${H}" role="img" aria-label="team size distribution">`;
  s += `<g class="grid">`;
  for (const c of [1, 10, 100, 1000, 10000, 100000, 1000000].filter((c) => c <= maxC * 1.01)) {
    s += `<line x1="${L}" x2="${W - R}" y1="${sy(c)}" y2="${sy(c)}"/><text x="${L - 6}" y="${sy(c) + 4}" text-anchor="end">${fmtCount(c)}</text>`;
  }
  s += `</g>`;
  s += `<text class="axis-title" x="14" y="${T + (H - T - B) / 2}" transform="rotate(-90 14 ${T + (H - T - B) / 2})" text-anchor="middle">Teams (log scale)</text>`;
  s += `<text class="axis-title" x="${L + (W - L - R) / 2}" y="${H - 6}" text-anchor="middle">Payload size, both caches (binary units, log scale)</text>`;
  buckets.forEach((b, i) => {
    const x = L + i * bw;
    const y = b.count ? sy(b.count) : H - B;
    const cls = outlierBins.has(i) ? "bar outlier" : "bar";
    const range = `${fmtBytes(b.lower_bytes)}–${fmtBytes(b.upper_bytes)}`;
    // An invisible full-height rect takes the hover, so a short bar is as easy to point
    // at as a tall one; the visible bar ignores the pointer.
    s += `<rect class="hit" data-count="${b.count}" data-range="${esc(range)}" x="${x + 2}" y="${T}" width="${Math.max(bw - 4, 1)}" height="${H - B - T}" fill-opacity="0"/>`;
    s += `<rect class="${cls}" data-count="${b.count}" data-range="${esc(range)}" x="${x + 2}" y="${y}" width="${Math.max(bw - 4, 1)}" height="${H - B - y}" pointer-events="none"><title>${esc(range)}: ${b.count} teams</title></rect>`;
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
    const i = buckets.findIndex((b) => inBin(t, b));
    if (i >= 0) s += `<text x="${L + i * bw + bw / 2}" y="${H - B + 32}" text-anchor="middle" fill="#c9372c">team ${t.team_id}</text>`;
  }
  s += `</svg><div class="readout muted small" data-readout>Hover a bar for its size range and team count.</div>`;
  return s;
}

function bindHistogram(svg) {
  const readout = svg.nextElementSibling;
  if (!readout || !readout.hasAttribute("data-readout")) return;
  svg.addEventListener("mousemove", (e) => {
    const r = e.target.closest("rect.hit");
    if (!r) return;
    readout.innerHTML = `<b>${esc(r.dataset.range)}</b>: ${esc(fmtCount(Number(r.dataset.count)))} teams`;
  });
}
