// A small canvas plotter of our own for the data viewer. Why not a charting library: the
// issue allows no CDN and no copied-in third-party file, and what the viewer needs — time
// axis, one or two value axes, step lines, a min/max band for binned data, severity
// marks, enum labels, a waveform by index — is a few hundred lines, less than bundling a
// library with a build step.
//
// Plot(canvas).draw({from, to, series}) draws; after each draw `plot.drawn` holds, per
// series, the canvas-pixel points it drew ([[x, y], ...]) and its alarm marks
// ([[x, y, severity], ...]), and the canvas carries
// `data-points` (their total), so tests and tools can check what was rendered.
"use strict";

const SEVERITY_COLORS = { 1: "#d29922", 2: "#cf222e", 3: "#8250df" };  // MINOR, MAJOR, INVALID
const SEVERITY_NAMES = { 0: "NO_ALARM", 1: "MINOR", 2: "MAJOR", 3: "INVALID" };
const COLORS = ["#1f6feb", "#1a7f37", "#bc4c00", "#8250df", "#bf3989", "#0a7a8a", "#6e7781"];

/** Nice round ticks covering [lo, hi], about `n` of them. */
function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
  const raw = (hi - lo) / Math.max(1, n);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw) || 10 * mag;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return { ticks, step, lo: Math.min(lo, ticks[0] ?? lo), hi: Math.max(hi, ticks[ticks.length - 1] ?? hi) };
}

const SEC = 1000, MIN = 60 * SEC, HOUR = 60 * MIN, DAY = 24 * HOUR;
const TIME_STEPS = [SEC, 2 * SEC, 5 * SEC, 10 * SEC, 15 * SEC, 30 * SEC, MIN, 2 * MIN, 5 * MIN, 10 * MIN,
  15 * MIN, 30 * MIN, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY,
  91 * DAY, 182 * DAY, 365 * DAY];

/** Time ticks (ms, local time) for [from, to] about `n` of them. */
function timeTicks(from, to, n) {
  const raw = (to - from) / Math.max(1, n);
  const step = TIME_STEPS.find(s => s >= raw) || 365 * DAY;
  const offset = new Date(from).getTimezoneOffset() * MIN;  // align days to local midnight
  const ticks = [];
  for (let t = Math.ceil((from - offset) / step) * step + offset; t <= to; t += step) ticks.push(t);
  return { ticks, step };
}

function two(n) { return String(n).padStart(2, "0"); }

function timeLabel(t, step) {
  const d = new Date(t);
  const date = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`;
  const hm = `${two(d.getHours())}:${two(d.getMinutes())}`;
  if (step >= DAY) return date;
  if (step >= MIN) return hm;
  return `${hm}:${two(d.getSeconds())}`;
}

function numLabel(v, step) {
  const digits = Math.max(0, Math.min(10, -Math.floor(Math.log10(step) + 1e-9)));
  if (Number.isInteger(step) && Math.abs(v) < 1e12) return v.toFixed(0);
  if (Math.abs(v) >= 1e12 || (Math.abs(v) < 1e-4 && v !== 0)) {
    // as many digits as tell neighbouring ticks apart
    const k = Math.max(2, Math.min(12, Math.ceil(Math.log10(Math.abs(v) / step))));
    return v.toExponential(k);
  }
  return v.toFixed(digits);
}

class Plot {
  constructor(canvas) {
    this.canvas = canvas;
    this.drawn = [];
    this.area = { left: 0, right: 0, top: 0, bottom: 0 };
    this.from = 0;
    this.to = 1;
  }

  /** Sizes the canvas backing store to its CSS size times the device pixel ratio. */
  resize() {
    const c = this.canvas, dpr = window.devicePixelRatio || 1;
    const w = Math.max(50, Math.round(c.clientWidth * dpr)), h = Math.max(50, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    return dpr;
  }

  /** The time (ms) at canvas CSS x. */
  timeAt(cssX) {
    const dpr = window.devicePixelRatio || 1, a = this.area;
    return this.from + (cssX * dpr - a.left) / (a.right - a.left) * (this.to - this.from);
  }

  /** The plot area's width in CSS pixels (the N of optimized_N). */
  widthPx() {
    return Math.max(10, Math.round(this.canvas.clientWidth - 140));
  }

  /** Draws `series` ([{name, color, egu, labels, points: [{t, y, min, max, sev}], binned}])
   *  over [from, to] (ms). Series of the same EGU share a value axis: the first EGU on the
   *  left, the others on the right. */
  draw(view) {
    const dpr = this.resize(), c = this.canvas, g = c.getContext("2d");
    this.from = view.from; this.to = view.to;
    const W = c.width, H = c.height, font = 12 * dpr;
    const a = this.area = { left: 80 * dpr, right: W - 60 * dpr, top: 10 * dpr, bottom: H - 28 * dpr };
    g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
    g.font = `${font}px system-ui, sans-serif`;
    const x = t => a.left + (t - view.from) / (view.to - view.from) * (a.right - a.left);

    // Value axes: one per EGU (enum PVs by their labels), at most two shown.
    const groups = [];
    for (const s of view.series) {
      const key = s.labels ? `enum:${s.labels.join("|")}` : (s.egu || "");
      let grp = groups.find(gr => gr.key === key);
      if (!grp) { grp = { key, egu: s.egu || "", labels: s.labels, series: [], lo: Infinity, hi: -Infinity }; groups.push(grp); }
      grp.series.push(s);
      s.group = grp;
      for (const p of s.points) {
        if (p.t < view.from || p.t > view.to) continue;
        const lo = p.min ?? p.y, hi = p.max ?? p.y;
        if (isFinite(lo)) grp.lo = Math.min(grp.lo, lo);
        if (isFinite(hi)) grp.hi = Math.max(grp.hi, hi);
      }
    }
    for (const grp of groups) {
      if (!isFinite(grp.lo)) { grp.lo = 0; grp.hi = 1; }
      if (grp.labels) { grp.lo = Math.min(grp.lo, 0) - 0.5; grp.hi = Math.max(grp.hi, grp.labels.length - 1) + 0.5; }
      const pad = (grp.hi - grp.lo) * 0.05;
      const nice = grp.labels ? { ticks: grp.labels.map((_, i) => i), step: 1, lo: grp.lo, hi: grp.hi }
        : niceTicks(grp.lo - pad, grp.hi + pad, Math.max(2, Math.round((a.bottom - a.top) / (50 * dpr))));
      Object.assign(grp, nice);
      grp.y = v => a.bottom - (v - grp.lo) / (grp.hi - grp.lo) * (a.bottom - a.top);
    }

    // Grid and axes.
    g.strokeStyle = "#e6e9ed"; g.lineWidth = 1; g.fillStyle = "#5f6b7a";
    const tt = timeTicks(view.from, view.to, Math.max(2, Math.round((a.right - a.left) / (110 * dpr))));
    g.textAlign = "center"; g.textBaseline = "top";
    for (const t of tt.ticks) {
      const px = Math.round(x(t)) + 0.5;
      g.beginPath(); g.moveTo(px, a.top); g.lineTo(px, a.bottom); g.stroke();
      g.fillText(timeLabel(t, tt.step), px, a.bottom + 4 * dpr);
    }
    groups.slice(0, 2).forEach((grp, i) => {
      g.textAlign = i === 0 ? "right" : "left"; g.textBaseline = "middle";
      const ax = i === 0 ? a.left - 5 * dpr : a.right + 5 * dpr;
      for (const v of grp.ticks) {
        const py = Math.round(grp.y(v)) + 0.5;
        if (i === 0) { g.beginPath(); g.moveTo(a.left, py); g.lineTo(a.right, py); g.stroke(); }
        g.fillText(grp.labels ? grp.labels[v] : numLabel(v, grp.step), ax, py);
      }
      // The EGU along the axis.
      g.save();
      g.translate(i === 0 ? 12 * dpr : W - 8 * dpr, (a.top + a.bottom) / 2);
      g.rotate(i === 0 ? -Math.PI / 2 : Math.PI / 2);
      g.textAlign = "center"; g.textBaseline = "middle"; g.fillStyle = "#1d232b";
      g.fillText(grp.labels ? "state" : (grp.egu || "(no EGU)"), 0, 0);
      g.restore();
    });
    g.strokeStyle = "#8c959f";
    g.strokeRect(a.left + 0.5, a.top + 0.5, a.right - a.left, a.bottom - a.top);

    // Series: band, line, severity marks; clipped to the plot area.
    g.save();
    g.beginPath(); g.rect(a.left, a.top, a.right - a.left, a.bottom - a.top); g.clip();
    this.drawn = [];
    for (const s of view.series) {
      const y = s.group.y, pts = s.points.filter(p => isFinite(p.y));
      const drawn = [];
      if (s.binned) {
        const band = pts.filter(p => isFinite(p.min) && isFinite(p.max));
        if (band.length) {
          g.beginPath();
          band.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.max)) : g.moveTo(x(p.t), y(p.max))));
          for (let i = band.length - 1; i >= 0; i--) g.lineTo(x(band[i].t), y(band[i].min));
          g.closePath();
          g.globalAlpha = 0.2; g.fillStyle = s.color; g.fill(); g.globalAlpha = 1;
        }
      }
      // Alarm severity: a strip along the time axis here, and a ring around each sample in
      // alarm once every line is drawn (on top, so no line hides it; hollow, so the
      // point stays visible).
      const alarms = [];
      for (const p of pts) {
        if (!p.sev) continue;
        g.fillStyle = SEVERITY_COLORS[p.sev] || SEVERITY_COLORS[3];
        g.fillRect(x(p.t) - 1.5 * dpr, a.bottom - 5 * dpr, 3 * dpr, 5 * dpr);
        alarms.push([Math.round(x(p.t)), Math.round(y(p.y)), p.sev]);
      }
      g.strokeStyle = s.color; g.lineWidth = 2 * dpr; g.lineJoin = "round";
      g.beginPath();
      pts.forEach((p, i) => {
        const px = x(p.t), py = y(p.y);
        if (i === 0) g.moveTo(px, py);
        else if (s.binned) g.lineTo(px, py);
        else { g.lineTo(px, y(pts[i - 1].y)); g.lineTo(px, py); }  // sample and hold
        drawn.push([Math.round(px), Math.round(py)]);
      });
      // The last value holds until the end of the view (or now, whichever is first).
      if (pts.length && !s.binned) {
        const last = pts[pts.length - 1], end = Math.min(view.to, Date.now());
        if (end > last.t) g.lineTo(x(end), y(last.y));
      }
      g.stroke();
      if (pts.length === 1) { g.fillStyle = s.color; g.fillRect(drawn[0][0] - 2 * dpr, drawn[0][1] - 2 * dpr, 4 * dpr, 4 * dpr); }
      this.drawn.push({ name: s.name, color: s.color, points: drawn, alarms });
    }
    g.lineWidth = 1.5 * dpr;
    for (const d of this.drawn) {
      for (const [ax, ay, sev] of d.alarms) {
        g.strokeStyle = SEVERITY_COLORS[sev] || SEVERITY_COLORS[3];
        g.beginPath(); g.arc(ax, ay, 4 * dpr, 0, 2 * Math.PI); g.stroke();
      }
    }
    g.restore();
    c.dataset.points = String(this.drawn.reduce((n, d) => n + d.points.length, 0));
  }

  /** Draws waveforms (`[{name, color, values, egu}]`) by element index. */
  drawWaveforms(waves) {
    const dpr = this.resize(), c = this.canvas, g = c.getContext("2d");
    const W = c.width, H = c.height;
    const a = this.area = { left: 80 * dpr, right: W - 20 * dpr, top: 10 * dpr, bottom: H - 28 * dpr };
    g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
    g.font = `${12 * dpr}px system-ui, sans-serif`;
    let lo = Infinity, hi = -Infinity, n = 1;
    for (const w of waves) {
      n = Math.max(n, w.values.length);
      for (const v of w.values) if (isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    const ny = niceTicks(lo, hi, 4), nx = niceTicks(0, Math.max(1, n - 1), 8);
    const x = i => a.left + i / Math.max(1, n - 1) * (a.right - a.left);
    const y = v => a.bottom - (v - ny.lo) / (ny.hi - ny.lo) * (a.bottom - a.top);
    g.strokeStyle = "#e6e9ed"; g.fillStyle = "#5f6b7a"; g.lineWidth = 1;
    g.textAlign = "right"; g.textBaseline = "middle";
    for (const v of ny.ticks) { const py = Math.round(y(v)) + 0.5; g.beginPath(); g.moveTo(a.left, py); g.lineTo(a.right, py); g.stroke(); g.fillText(numLabel(v, ny.step), a.left - 5 * dpr, py); }
    g.textAlign = "center"; g.textBaseline = "top";
    for (const i of nx.ticks) if (i <= n - 1) g.fillText(String(Math.round(i)), x(i), a.bottom + 4 * dpr);
    g.strokeStyle = "#8c959f"; g.strokeRect(a.left + 0.5, a.top + 0.5, a.right - a.left, a.bottom - a.top);
    // The EGU along the value axis (the first waveform's), as the time plot's.
    const egu = (waves.find(w => w.egu) || {}).egu || "(no EGU)";
    g.save();
    g.translate(12 * dpr, (a.top + a.bottom) / 2);
    g.rotate(-Math.PI / 2);
    g.textAlign = "center"; g.textBaseline = "middle"; g.fillStyle = "#1d232b";
    g.fillText(egu, 0, 0);
    g.restore();
    this.axisLabel = egu;
    this.drawn = [];
    for (const w of waves) {
      g.strokeStyle = w.color; g.lineWidth = 2 * dpr; g.beginPath();
      const drawn = [];
      w.values.forEach((v, i) => { const px = x(i), py = y(v); i ? g.lineTo(px, py) : g.moveTo(px, py); drawn.push([Math.round(px), Math.round(py)]); });
      g.stroke();
      this.drawn.push({ name: w.name, color: w.color, points: drawn });
    }
    c.dataset.points = String(this.drawn.reduce((k, d) => k + d.points.length, 0));
  }
}
