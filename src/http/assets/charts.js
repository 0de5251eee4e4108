// Hand-written canvas charts for the dashboard: no library, no build step.
//
// A Series keeps at most MAX points: when it grows past that, its older half is thinned
// (pairs averaged), so old history is downsampled and the newest points stay exact.
// Charts draw only when asked through requestAnimationFrame (one draw per frame at most,
// however many events arrived), never per event.
(() => {
"use strict";

const MAX_POINTS = 4000;
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

class Series {
  constructor(name, color) {
    this.name = name;
    this.color = color;
    this.xs = [];
    this.ys = [];
    this.received = 0; // every point ever added, kept or merged
  }
  push(x, y) {
    this.received++;
    this.xs.push(x);
    this.ys.push(y === null || y === undefined ? NaN : y);
    if (this.xs.length > MAX_POINTS) this.thin();
  }
  // Averages pairs of points in the older half; the newer half stays exact.
  thin() {
    const half = Math.floor(this.xs.length / 2);
    const xs = [], ys = [];
    for (let i = 0; i + 1 < half; i += 2) {
      xs.push((this.xs[i] + this.xs[i + 1]) / 2);
      ys.push((this.ys[i] + this.ys[i + 1]) / 2);
    }
    const start = half - (half % 2);
    this.xs = xs.concat(this.xs.slice(start));
    this.ys = ys.concat(this.ys.slice(start));
  }
  clear() {
    this.xs = []; this.ys = []; this.received = 0;
  }
}

// TensorBoard's smoothing: a debiased exponential moving average, weight in [0, 1).
function smooth(ys, weight) {
  if (!(weight > 0)) return ys;
  const out = new Array(ys.length);
  let last = 0, n = 0;
  for (let i = 0; i < ys.length; i++) {
    const y = ys[i];
    if (!Number.isFinite(y)) { out[i] = y; continue; }
    last = last * weight + (1 - weight) * y;
    n++;
    out[i] = last / (1 - Math.pow(weight, n));
  }
  return out;
}

let pending = new Set();
let frameAsked = false;

// Asks for `chart` to be drawn at the next animation frame.
function requestDraw(chart) {
  pending.add(chart);
  if (!frameAsked) {
    frameAsked = true;
    requestAnimationFrame(() => {
      frameAsked = false;
      const charts = pending;
      pending = new Set();
      for (const c of charts) c.draw();
    });
  }
}

function fmt(v) {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return Number(v.toPrecision(4)).toString();
}

// A line chart on a <canvas>: several series, axes with ticks, a legend, optional log
// scale and smoothing. `canvas.dataset.points` is the number of points received.
class LineChart {
  constructor(canvas, opts = {}) {
    this.canvas = canvas;
    this.title = opts.title || "";
    this.xLabel = opts.xLabel || "";
    this.logY = !!opts.logY;
    this.fixed = opts.fixed || null; // {x: [0, 1], y: [0, 1]}
    this.smoothing = 0;
    this.series = [];
    this.byName = new Map();
  }
  get(name) {
    let s = this.byName.get(name);
    if (!s) {
      s = new Series(name, PALETTE[this.series.length % PALETTE.length]);
      this.series.push(s);
      this.byName.set(name, s);
    }
    return s;
  }
  push(name, x, y) {
    this.get(name).push(x, y);
    requestDraw(this);
  }
  setSeries(name, xs, ys) {
    const s = this.get(name);
    s.clear();
    for (let i = 0; i < xs.length; i++) s.push(xs[i], ys[i]);
    requestDraw(this);
  }
  clear() {
    this.series = [];
    this.byName = new Map();
    requestDraw(this);
  }
  setSmoothing(w) {
    this.smoothing = w;
    requestDraw(this);
  }
  points() {
    return this.series.reduce((n, s) => n + s.received, 0);
  }
  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth || 480, h = c.clientHeight || 240;
    if (c.width !== Math.round(w * dpr)) c.width = Math.round(w * dpr);
    if (c.height !== Math.round(h * dpr)) c.height = Math.round(h * dpr);
    c.dataset.points = String(this.points());
    c.dataset.series = String(this.series.length);
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    g.font = "11px sans-serif";
    g.fillStyle = "#333";
    g.fillText(this.title, 8, 13);
    const ty = (v) => (this.logY ? (v > 0 ? Math.log10(v) : NaN) : v);
    const drawn = this.series.map((s) => ({ s, ys: smooth(s.ys, this.smoothing) }));
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const { s, ys } of drawn) {
      for (let i = 0; i < s.xs.length; i++) {
        const y = ty(ys[i]);
        if (!Number.isFinite(y)) continue;
        x0 = Math.min(x0, s.xs[i]); x1 = Math.max(x1, s.xs[i]);
        y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    }
    if (this.fixed) { [x0, x1] = this.fixed.x; [y0, y1] = this.fixed.y; }
    const L = 52, R = 10, T = 20, B = 30;
    if (!Number.isFinite(x0)) {
      g.fillStyle = "#999";
      g.fillText("waiting for data…", L, T + 20);
      return;
    }
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y1 = y0 + Math.abs(y0 || 1) * 0.05; y0 = y0 - Math.abs(y0 || 1) * 0.05; }
    const px = (x) => L + ((x - x0) / (x1 - x0)) * (w - L - R);
    const py = (y) => T + (1 - (y - y0) / (y1 - y0)) * (h - T - B);
    g.strokeStyle = "#ccc";
    g.lineWidth = 1;
    g.beginPath();
    g.moveTo(L, T); g.lineTo(L, h - B); g.lineTo(w - R, h - B);
    g.stroke();
    g.fillStyle = "#555";
    for (let i = 0; i <= 4; i++) {
      const yv = y0 + ((y1 - y0) * i) / 4;
      const label = this.logY ? fmt(Math.pow(10, yv)) : fmt(yv);
      g.fillText(label, 2, py(yv) + 4);
      const xv = x0 + ((x1 - x0) * i) / 4;
      g.fillText(fmt(xv), px(xv) - 10, h - B + 14);
    }
    g.fillText(this.xLabel, w - R - g.measureText(this.xLabel).width, h - 4);
    let lx = L + 8;
    for (const { s, ys } of drawn) {
      g.strokeStyle = s.color;
      g.lineWidth = 1.5;
      g.beginPath();
      let moved = false;
      for (let i = 0; i < s.xs.length; i++) {
        const y = ty(ys[i]);
        if (!Number.isFinite(y)) { moved = false; continue; }
        const X = px(s.xs[i]), Y = py(y);
        if (moved) g.lineTo(X, Y); else { g.moveTo(X, Y); moved = true; }
      }
      g.stroke();
      if (this.series.length > 1 || s.name) {
        g.fillStyle = s.color;
        g.fillRect(lx, T + 2, 10, 3);
        g.fillStyle = "#333";
        g.fillText(s.name, lx + 13, T + 7);
        lx += 20 + g.measureText(s.name).width;
      }
    }
  }
}

window.Charts = { LineChart, Series, smooth, requestDraw, fmt, PALETTE, MAX_POINTS };
})();
