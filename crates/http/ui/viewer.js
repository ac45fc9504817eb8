// The data viewer: PVs over a time range, re-queried with optimized_N (N = the plot's
// width in pixels) on every zoom or pan so a year of data stays a few hundred points;
// waveforms' latest value by index; live mode; CSV export; the view's state in the URL.
"use strict";

const V = {
  pvs: [],          // names, in the order added
  from: 0, to: 0,   // ms
  live: false,
  series: [],       // what is shown: [{name, color, egu, labels, points, binned, type}]
  waves: [],        // waveforms: [{name, color, values, egu}]
  queries: [],      // the getData URLs of the last fetch
  generation: 0,    // fetches answered after a newer one started are dropped
  busy: 0,          // fetches under way
  retries: 0,       // re-asks after an error, in a row
};
const plot = new Plot(document.getElementById("plot"));
const wfPlot = new Plot(document.getElementById("wf-plot"));
window.viewer = V;
window.viewerPlot = plot;
window.viewerWaveformPlot = wfPlot;

const metaCache = {};

/** getMetadata of a PV: its DBR type, EGU, enum labels (cached per page). */
async function meta(pv) {
  if (!metaCache[pv]) {
    metaCache[pv] = AA.api(`/retrieval/bpl/getMetadata?pv=${AA.enc(pv)}`).catch(e => {
      delete metaCache[pv];  // not known yet (a PV just added): asked again next time
      return { error: e.message };
    });
  }
  return metaCache[pv];
}

function enumLabels(m) {
  const labels = [];
  for (let i = 0; m[`ENUM_${i}`] !== undefined; i++) labels.push(m[`ENUM_${i}`]);
  return labels.length ? labels : null;
}

function iso(ms) { return new Date(ms).toISOString(); }

/** The URL of the view: PVs, and either a relative span (live) or a fixed range. */
function saveUrl() {
  const q = new URLSearchParams();
  for (const p of V.pvs) q.append("pv", p);
  if (V.live) { q.set("range", String(Math.round((V.to - V.from) / 1000))); q.set("live", "1"); }
  else { q.set("from", iso(V.from)); q.set("to", iso(V.to)); }
  history.replaceState(null, "", `?${q}`);
}

function loadUrl() {
  const q = new URLSearchParams(location.search);
  V.pvs = q.getAll("pv").flatMap(p => p.split(",")).map(p => p.trim()).filter(Boolean);
  const now = Date.now();
  const from = Date.parse(q.get("from") || ""), to = Date.parse(q.get("to") || "");
  if (isFinite(from) && isFinite(to) && to > from) { V.from = from; V.to = to; }
  else { const span = (Number(q.get("range")) || 3600) * 1000; V.to = now; V.from = now - span; }
  V.live = q.get("live") === "1";
  document.getElementById("live").checked = V.live;
}

function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 19);
}

/** Fetches every PV for the current range and redraws. */
async function refresh() {
  V.busy++;
  try { await fetchAndDraw(); } finally { V.busy--; }
}

async function fetchAndDraw() {
  const gen = ++V.generation;
  saveUrl();
  document.getElementById("from").value = localInput(V.from);
  document.getElementById("to").value = localInput(V.to);
  const n = plot.widthPx();
  const to = Math.min(V.to, Date.now());
  const queries = [], errors = [];
  const work = V.pvs.map(async (pv, i) => {
    const color = COLORS[i % COLORS.length];
    const m = await meta(pv);
    if (m.error) { errors.push(`${pv}: ${m.error}`); return null; }
    const type = m.DBRType || "";
    if (/WAVEFORM/.test(type)) {
      // A waveform: its latest value at the end of the view, by element index.
      const at = await AA.api(`/retrieval/data/getDataAtTime?at=${AA.enc(iso(to))}`, [pv]);
      const v = at && at[pv];
      return { wave: { name: pv, color, values: v && Array.isArray(v.val) ? v.val.map(Number) : [], egu: m.EGU || "" } };
    }
    if (/STRING/.test(type)) { errors.push(`${pv}: a string PV is not plotted`); return null; }
    const url = `/retrieval/data/getData.json?pv=${AA.enc(`optimized_${n}(${pv})`)}&from=${AA.enc(iso(V.from))}&to=${AA.enc(iso(to))}`;
    queries.push(url);
    const answer = await AA.api(url);
    const data = (answer && answer[0] && answer[0].data) || [];
    let binned = false;
    const points = data.map(s => {
      const t = s.secs * 1000 + Math.floor((s.nanos || 0) / 1e6);
      if (Array.isArray(s.val)) {
        // optimized's bins: [mean, std, min, max, count, ...]
        binned = true;
        return { t, y: s.val[0], min: s.val[2], max: s.val[3], count: s.val[4], sev: s.severity, stat: s.status };
      }
      return { t, y: Number(s.val), sev: s.severity, stat: s.status };
    }).filter(p => p.t <= to);
    const prec = Number.parseInt(m.PREC, 10);
    return { series: { name: pv, color, egu: m.EGU || "", labels: enumLabels(m), points, binned, type,
      prec: Number.isInteger(prec) && prec >= 0 && prec <= 15 ? prec : undefined } };
  });
  let results;
  try { results = await Promise.all(work); } catch (e) { errors.push(e.message); results = []; }
  if (gen !== V.generation) return;  // a newer view was asked for meanwhile
  V.series = results.filter(r => r && r.series).map(r => r.series);
  V.waves = results.filter(r => r && r.wave).map(r => r.wave);
  V.queries = queries;
  draw();
  legend();
  if (V.series.length || V.waves.length) AA.ready();
  AA.say("msg", errors.join("\n"), "err");
  // A PV just added is "Being archived" a moment before its type info is recorded (its
  // metadata and data are 404 until then): ask again a few times, as live mode would.
  if (errors.length && !V.live && V.retries < 5) { V.retries++; setTimeout(refresh, 3000); }
  if (!errors.length) V.retries = 0;
  const pts = V.series.reduce((k, s) => k + s.points.length, 0);
  document.getElementById("status-line").textContent =
    `${pts} point(s) from the server for ${V.pvs.length} PV(s), optimized_${n}; ${new Date(V.from).toLocaleString()} – ${new Date(V.to).toLocaleString()}`;
}

function draw() {
  plot.draw({ from: V.from, to: V.to, series: V.series });
  const wf = document.getElementById("wf-section");
  wf.hidden = V.waves.length === 0;
  if (V.waves.length) wfPlot.drawWaveforms(V.waves);
}

/** A value of series `s` as text: an enum's label (a bin's mean, 1.2999…, rounded to the
 *  nearest state), else the number (with the PV's PREC digits when `usePrec` and known). */
function valueText(s, y, usePrec) {
  if (s.labels && Number.isFinite(y)) {
    const label = s.labels[Math.round(y)];
    if (label !== undefined) return label;
  }
  if (usePrec && s.prec !== undefined && Number.isFinite(y)) return y.toFixed(s.prec);
  return y;
}

function legend() {
  const box = document.getElementById("legend");
  const entries = V.pvs.map((pv, i) => {
    const s = V.series.find(x => x.name === pv) || V.waves.find(x => x.name === pv);
    const last = s && s.points && s.points[s.points.length - 1];
    let value = "";
    if (last) {
      const shown = valueText(s, last.y, true);
      value = ` = ${shown}${s.egu ? " " + s.egu : ""}${last.sev ? ` (${SEVERITY_NAMES[last.sev] || last.sev})` : ""}`;
    }
    return AA.el("span", { "data-pv": pv },
      AA.el("span", { class: "sw", style: `background:${COLORS[i % COLORS.length]}` }),
      AA.el("a", { href: `pv.html?pv=${AA.enc(pv)}` }, pv), value,
      AA.el("button", { title: "remove", onclick: () => { V.pvs = V.pvs.filter(p => p !== pv); refresh(); } }, "×"));
  });
  box.replaceChildren(...entries);
}

let pending = null;
/** Redraws now with the data at hand, and re-queries once the user pauses. */
function changed() {
  draw();
  clearTimeout(pending);
  pending = setTimeout(refresh, 250);
}

function zoom(factor, centre) {
  const c = centre ?? (V.from + V.to) / 2;
  const span = Math.max(1000, (V.to - V.from) * factor);
  const ratio = (c - V.from) / (V.to - V.from);
  V.from = c - span * ratio;
  V.to = V.from + span;
  changed();
}

function pan(fraction) {
  const d = (V.to - V.from) * fraction;
  V.from += d; V.to += d;
  setLive(false);
  changed();
}

function setLive(on) {
  V.live = on;
  document.getElementById("live").checked = on;
}

/** The shown data as CSV: `time,pv,value,min,max,count,severity,status`, a row a point
 *  (enum values as their labels), a waveform's latest value as one row of values. */
function dataCsv() {
  const rows = [];
  for (const s of V.series) {
    for (const p of s.points) {
      rows.push({ time: iso(p.t), pv: s.name, value: valueText(s, p.y, false),
        min: p.min ?? "", max: p.max ?? "", count: p.count ?? "", severity: SEVERITY_NAMES[p.sev] ?? p.sev, status: p.stat });
    }
  }
  for (const w of V.waves) rows.push({ time: iso(Math.min(V.to, Date.now())), pv: w.name, value: w.values.join(" ") });
  rows.sort((a, b) => a.time.localeCompare(b.time));
  return AA.toCsv(["time", "pv", "value", "min", "max", "count", "severity", "status"], rows);
}

function exportCsv() {
  AA.download("archiver-data.csv", dataCsv());
}

async function suggest(text) {
  if (text.length < 2) return;
  try {
    const names = await AA.api(`/retrieval/bpl/getMatchingPVs?pv=${AA.enc(text.includes("*") ? text : text + "*")}&limit=50`);
    document.getElementById("pv-list").replaceChildren(...(names || []).map(n => AA.el("option", { value: n })));
  } catch (e) { /* suggestions are optional */ }
}

document.addEventListener("DOMContentLoaded", () => {
  AA.nav("viewer.html");
  loadUrl();
  const input = document.getElementById("pv-input");
  const add = () => {
    for (const p of input.value.split(/[\s,]+/).filter(Boolean)) if (!V.pvs.includes(p)) V.pvs.push(p);
    input.value = "";
    refresh();
  };
  document.getElementById("pv-add").onclick = add;
  input.addEventListener("keydown", e => { if (e.key === "Enter") add(); });
  input.addEventListener("input", () => suggest(input.value.trim()));
  for (const b of document.querySelectorAll("button[data-range]")) {
    b.onclick = () => { const span = Number(b.dataset.range) * 1000; V.to = Date.now(); V.from = V.to - span; refresh(); };
  }
  document.getElementById("apply").onclick = () => {
    const f = Date.parse(document.getElementById("from").value), t = Date.parse(document.getElementById("to").value);
    if (!(isFinite(f) && isFinite(t) && t > f)) { AA.say("msg", "Give a 'from' before 'to'.", "err"); return; }
    V.from = f; V.to = t; setLive(false); refresh();
  };
  document.getElementById("zoom-in").onclick = () => zoom(0.5);
  document.getElementById("zoom-out").onclick = () => zoom(2);
  document.getElementById("pan-left").onclick = () => pan(-0.25);
  document.getElementById("pan-right").onclick = () => pan(0.25);
  document.getElementById("live").onchange = ev => { setLive(ev.target.checked); if (V.live) { const s = V.to - V.from; V.to = Date.now(); V.from = V.to - s; } refresh(); };
  document.getElementById("csv").onclick = exportCsv;
  document.getElementById("share").onclick = async () => {
    saveUrl();
    try { await navigator.clipboard.writeText(location.href); AA.say("msg", `Link copied: ${location.href}`); }
    catch (e) { AA.say("msg", `Link: ${location.href}`); }
  };
  const canvas = document.getElementById("plot");
  canvas.addEventListener("wheel", ev => {
    ev.preventDefault();
    const r = canvas.getBoundingClientRect();
    zoom(ev.deltaY > 0 ? 1.25 : 0.8, plot.timeAt(ev.clientX - r.left));
  }, { passive: false });
  let drag = null;
  canvas.addEventListener("mousedown", ev => { drag = { x: ev.clientX, from: V.from, to: V.to }; canvas.style.cursor = "grabbing"; });
  window.addEventListener("mousemove", ev => {
    if (!drag) return;
    const msPerPx = (drag.to - drag.from) / plot.widthPx();
    const d = -(ev.clientX - drag.x) * msPerPx;
    V.from = drag.from + d; V.to = drag.to + d;
    if (d !== 0) setLive(false);
    draw();
  });
  window.addEventListener("mouseup", () => { if (drag) { drag = null; canvas.style.cursor = ""; changed(); } });
  window.addEventListener("resize", () => changed());
  setInterval(() => {
    if (!V.live || V.generation === 0) return;
    const span = V.to - V.from;
    V.to = Date.now(); V.from = V.to - span;
    refresh();
  }, 2000);
  refresh();
});
