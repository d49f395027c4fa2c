// Rebuild lanes over time. The engine reports lanes as they are now, so the dashboard
// keeps what it saw at each refresh (every 10 s) in this tab's sessionStorage, an hour
// at most, and says so under the chart.
import { serverNow } from "./format.js";
import { timeChart, COLORS } from "./charts.js";

const KEY = "flagwarden.lanes";
const KEEP_MS = 3600e3;
const MIN_GAP_MS = 4e3;

function load() {
  try { return JSON.parse(sessionStorage.getItem(KEY) || "[]"); } catch (_) { return []; }
}

// record adds the engine status st as a sample and returns the samples kept.
export function record(st) {
  const now = serverNow();
  let samples = load().filter((s) => now - s.t < KEEP_MS && s.t <= now);
  if (!samples.length || now - samples[samples.length - 1].t >= MIN_GAP_MS) {
    const lanes = {};
    for (const l of st.lanes) lanes[l.lane] = { running: l.running_here ?? l.running, waiting: l.waiting };
    samples.push({ t: now, lanes });
  }
  try { sessionStorage.setItem(KEY, JSON.stringify(samples)); } catch (_) { /* full or disabled: keep none */ }
  return samples;
}

const LANE_COLORS = { small: COLORS.line, large: COLORS.violet, quarantine: COLORS.warn };

export function lanesChart(st, samples, height = 190) {
  const series = st.lanes.map((l) => ({
    label: `running · ${l.lane}`,
    color: LANE_COLORS[l.lane] || COLORS.teal,
    points: samples.filter((s) => s.lanes[l.lane]).map((s) => ({ t: new Date(s.t).toISOString(), v: s.lanes[l.lane].running })),
  }));
  series.push({
    label: "waiting · all lanes", color: COLORS.muted, dash: [6, 4],
    points: samples.map((s) => ({ t: new Date(s.t).toISOString(), v: Object.values(s.lanes).reduce((a, l) => a + l.waiting, 0) })),
  });
  return timeChart({
    title: "Rebuild lanes over time", yLabel: "Builds (count)", unit: "count", height, series,
    empty: "No samples yet.",
  }) + `<p class="muted small">Sampled by this page at each refresh since it opened (kept an hour).</p>`;
}
