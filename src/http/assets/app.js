// The gradstream dashboard: a single-page app over the JSON + SSE API.
//   #/            the jobs table (live status, progress, best metric, filters, cancel)
//   #/job/ID      one job: live charts, confusion matrix, curves, diagnostics, spec, export
//   #/compare/A,B two or more jobs' curves overlaid
// Events only update data; drawing happens once per animation frame (charts.js).
(() => {
"use strict";

const { LineChart, fmt } = window.Charts;
const app = document.getElementById("app");
let cleanup = []; // closes the current page's streams and timers

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(path, opts) {
  const r = await fetch(path, opts);
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function showError(where, e) {
  where.replaceChildren(el("div", { class: "error" }, String(e.message || e)));
}

function pct(v) { return (100 * v).toFixed(1) + "%"; }
function runName(run) { return run === 0 ? "job" : "member " + run; }

function statusBadge(status) {
  return el("span", { class: "status " + status.toLowerCase(), "data-status": status }, status);
}

async function cancelJob(id) {
  return api(`/api/jobs/${id}/cancel`, { method: "POST" });
}

// ---------------------------------------------------------------- the jobs page

function jobsPage(params) {
  const status = el("select", { id: "filter-status" },
    ["", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"].map((s) =>
      el("option", { value: s }, s || "any status")));
  status.value = params.get("status") || "";
  const name = el("input", { id: "filter-name", placeholder: "name contains…", value: params.get("name") || "" });
  const body = el("tbody");
  const note = el("div", { class: "note" });
  const compare = el("button", { id: "compare-selected", onclick: () => {
    const ids = [...body.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value);
    if (ids.length >= 2) location.hash = "#/compare/" + ids.join(",");
    else note.textContent = "select two or more jobs to compare";
  } }, "Compare selected");
  const selected = new Set();
  app.replaceChildren(
    el("h1", {}, "Jobs"),
    el("div", { class: "toolbar" }, status, name, compare),
    note,
    el("table", { class: "jobs", id: "jobs" },
      el("thead", {}, el("tr", {}, ["", "name", "id", "kind", "status", "progress", "best", "last epoch", "created", ""].map((h) => el("th", {}, h)))),
      body));
  async function refresh() {
    const q = new URLSearchParams();
    if (status.value) q.set("status", status.value);
    if (name.value) q.set("name", name.value);
    try {
      const page = await api("/api/jobs?" + q);
      note.textContent = page.jobs.length ? "" : "no jobs match";
      body.replaceChildren(...page.jobs.map((j) => jobRow(j, selected, refresh)));
    } catch (e) { showError(note, e); }
  }
  status.addEventListener("change", refresh);
  name.addEventListener("input", refresh);
  refresh();
  const timer = setInterval(refresh, 1000);
  cleanup.push(() => clearInterval(timer));
}

function jobRow(j, selected, refresh) {
  const check = el("input", { type: "checkbox", value: j.id });
  check.checked = selected.has(j.id);
  check.addEventListener("change", () => (check.checked ? selected.add(j.id) : selected.delete(j.id)));
  const terminal = ["SUCCEEDED", "FAILED", "CANCELLED"].includes(j.status);
  const cancel = terminal ? "" : el("button", {
    class: "cancel", "data-job": j.id,
    onclick: async (ev) => { ev.target.disabled = true; await cancelJob(j.id).catch(() => {}); refresh(); },
  }, "Cancel");
  const best = j.best ? `${j.best.metric} ${fmt(j.best.value)} (${j.best.run ? "member " + j.best.run + " " : ""}epoch ${j.best.epoch})` : "";
  const last = j.last_epoch ? `loss ${fmt(j.last_epoch.train_loss)}` +
    (j.last_epoch.validation_loss != null ? ` / val ${fmt(j.last_epoch.validation_loss)}` : "") : "";
  return el("tr", { "data-job": j.id, "data-status": j.status },
    el("td", {}, check),
    el("td", {}, el("a", { href: "#/job/" + j.id }, j.name || "(unnamed)")),
    el("td", { class: "mono" }, j.id.slice(0, 8)),
    el("td", {}, j.kind),
    el("td", { title: j.message }, statusBadge(j.status)),
    el("td", {}, el("progress", { max: 1, value: j.progress }), " ",
      j.kind === "training" ? `${j.epochs_completed}/${j.epochs_total}` : ""),
    el("td", {}, best),
    el("td", {}, last),
    el("td", {}, new Date(j.created_ms).toLocaleString()),
    el("td", {}, cancel));
}

// ---------------------------------------------------------------- one job's history

// What the pages keep of a job's events: chart series and every epoch's event (curves
// only for the newest epochs, so 1,000 epochs stay small).
const KEEP_CURVES = 20;

class JobHistory {
  constructor(job) {
    this.job = job;
    this.epochs = []; // epoch events in order
    this.statuses = [];
    this.range = [];
    this.lastSeq = 0;
    this.listeners = [];
  }
  add(e) {
    this.lastSeq = e.seq;
    if (e.type === "epoch") {
      this.epochs.push(e);
      const old = this.epochs.length - 1 - KEEP_CURVES;
      if (old >= 0) {
        const o = this.epochs[old];
        if (o.validation) o.validation.curves = [];
        o.train.curves = [];
      }
    } else if (e.type === "status") this.statuses.push(e);
    else if (e.type === "range_point") this.range.push(e);
    for (const f of this.listeners) f(e);
  }
}

// Follows a job's events over SSE; the browser resumes with Last-Event-ID by itself when
// a connection drops. `onEnd` is called once after the last event.
function follow(id, history, onEnd) {
  const src = new EventSource(`/api/jobs/${id}/events`);
  src.onmessage = (m) => history.add(JSON.parse(m.data));
  src.addEventListener("end", (m) => { src.close(); onEnd && onEnd(JSON.parse(m.data)); });
  cleanup.push(() => src.close());
  return src;
}

// ---------------------------------------------------------------- the job page

function chartBox(id, title, opts = {}) {
  const canvas = el("canvas", { id, class: "chart" });
  return { box: el("div", { class: "chart-box" }, canvas), chart: new LineChart(canvas, { title, ...opts }) };
}

async function jobPage(id) {
  app.replaceChildren(el("p", {}, "loading…"));
  let job;
  try { job = await api(`/api/jobs/${id}`); } catch (e) { showError(app, e); return; }
  const history = new JobHistory(job);
  const header = el("div", { class: "job-header" });
  const smoothing = el("input", { type: "range", id: "smoothing", min: 0, max: 0.99, step: 0.01, value: 0.6 });
  const smoothingValue = el("span", {}, "0.6");
  const iterLoss = chartBox("chart-iteration-loss", "training loss per iteration", { xLabel: "step" });
  const lr = chartBox("chart-lr", "learning rate", { xLabel: "step", logY: true });
  const epochLoss = chartBox("chart-epoch-loss", "loss per epoch (train / validation)", { xLabel: "epoch" });
  const epochMetrics = chartBox("chart-epoch-metrics", "accuracy and macro F1 per epoch", { xLabel: "epoch" });
  const smoothed = [iterLoss.chart, epochLoss.chart, epochMetrics.chart];
  const applySmoothing = () => {
    smoothingValue.textContent = smoothing.value;
    for (const c of smoothed) c.setSmoothing(Number(smoothing.value));
  };
  smoothing.addEventListener("input", applySmoothing);
  applySmoothing();
  const messages = el("ul", { id: "messages", class: "messages" });
  const epochPanel = epochView(history);
  const downloads = el("div", { class: "downloads" },
    el("a", { class: "button", id: "download-torchscript", href: `/api/jobs/${id}/model?format=torchscript&version=best` }, "Download TorchScript (best)"),
    el("a", { class: "button", id: "download-safetensors", href: `/api/jobs/${id}/model?format=safetensors&version=best` }, "Download safetensors + model card (best, .tar)"),
    el("a", { class: "button", href: `/api/jobs/${id}/model?format=torchscript&version=last` }, "TorchScript (last epoch)"));
  const imbalance = el("div", { id: "imbalance" });
  const spec = el("pre", { id: "spec", class: "spec" });
  const range = chartBox("chart-range", "range test: loss by learning rate", { xLabel: "log10 learning rate" });

  const sections = [
    header,
    el("div", { class: "toolbar" }, el("label", {}, "smoothing ", smoothing, " ", smoothingValue)),
    el("div", { class: "charts" }, iterLoss.box, lr.box, epochLoss.box, epochMetrics.box),
  ];
  if (job.kind === "range_test") sections.push(el("div", { class: "charts" }, range.box));
  sections.push(
    el("h2", {}, "Messages"), messages,
    epochPanel.root,
    el("h2", {}, "Imbalance remedies"), imbalance,
    el("h2", {}, "Model"), downloads,
    el("h2", {}, "Spec"), spec);
  app.replaceChildren(...sections);

  function renderHeader(j) {
    const cancel = ["SUCCEEDED", "FAILED", "CANCELLED"].includes(j.status) ? "" :
      el("button", { class: "cancel", id: "cancel-job", onclick: async (ev) => {
        ev.target.disabled = true; renderHeader(await cancelJob(id).catch(() => j));
      } }, "Cancel");
    header.replaceChildren(
      el("h1", {}, j.name || "(unnamed)", " ", statusBadge(j.status), " ", cancel),
      el("div", { class: "meta" },
        `${j.kind} · ${j.id} · ${j.device || "not started"} · ${j.parameter_count} parameters · ` +
        `${j.train_samples} train / ${j.validation_samples} validation rows · ` +
        (j.kind === "training" ? `epoch ${j.epochs_completed} of ${j.epochs_total}` : "") +
        (j.best ? ` · best ${j.best.metric} ${fmt(j.best.value)} at ${runName(j.best.run)} epoch ${j.best.epoch}` : "")),
      el("div", { class: "meta" }, j.message));
    spec.textContent = JSON.stringify(j.spec, null, 2);
    imbalance.replaceChildren(imbalanceView(j));
  }
  renderHeader(job);
  const refreshJob = async () => { try { renderHeader(await api(`/api/jobs/${id}`)); } catch (e) { /* shown next time */ } };

  history.listeners.push((e) => {
    const series = (base) => (e.run === 0 ? base : `${base} (member ${e.run})`);
    if (e.type === "iteration") {
      iterLoss.chart.push(series("loss"), e.global_step, e.loss);
      lr.chart.push(series("lr"), e.global_step, e.learning_rate);
    } else if (e.type === "epoch") {
      const name = e.ensemble ? "ensemble" : runName(e.run);
      const x = e.epoch;
      epochLoss.chart.push(`train ${name}`, x, e.train.loss);
      epochMetrics.chart.push(`train acc ${name}`, x, e.train.accuracy);
      if (e.validation) {
        epochLoss.chart.push(`val ${name}`, x, e.validation.loss);
        epochMetrics.chart.push(`val acc ${name}`, x, e.validation.accuracy);
        epochMetrics.chart.push(`val F1 ${name}`, x, e.validation.macro_avg.f1);
      }
      epochPanel.added();
      if (e.overfitting) addMessage(`epoch ${e.epoch} (${name}): validation loss rose while training loss fell (gap ${fmt(e.generalization_gap)})`, "warn", e.time_ms);
      scheduleRefresh();
    } else if (e.type === "status") {
      addMessage(`${e.status}${e.message ? ": " + e.message : ""}`, e.status === "FAILED" ? "bad" : "", e.time_ms);
      scheduleRefresh();
    } else if (e.type === "range_point") {
      range.chart.push("loss", Math.log10(e.learning_rate), e.loss);
      range.chart.push("smoothed", Math.log10(e.learning_rate), e.smoothed_loss);
    } else if (e.type === "range_result") {
      addMessage(`range test: suggested learning rate ${fmt(e.suggested)} (min loss ${fmt(e.min_loss)}${e.diverged ? ", diverged" : ""})`, "", e.time_ms);
    }
  });
  function addMessage(text, cls, timeMs) {
    messages.append(el("li", { class: cls }, new Date(timeMs).toLocaleTimeString(), " ", text));
  }
  let refreshAsked = false;
  function scheduleRefresh() {
    if (refreshAsked) return;
    refreshAsked = true;
    setTimeout(() => { refreshAsked = false; refreshJob(); }, 300);
  }
  follow(id, history, () => refreshJob());
}

function imbalanceView(j) {
  const s = j.spec;
  const rows = [];
  const weighting = typeof s.class_weighting === "string" ? s.class_weighting : JSON.stringify(s.class_weighting);
  rows.push(["class weighting", weighting]);
  if (j.class_weights.length) rows.push(["class weights in use", j.class_weights.map((w, i) => `${j.labels[i] ?? i}: ${fmt(w)}`).join(", ")]);
  rows.push(["resampling", s.resampling ? JSON.stringify(s.resampling) : "none"]);
  rows.push(["ensemble", s.ensemble ? JSON.stringify(s.ensemble) : "none"]);
  rows.push(["loss", JSON.stringify(s.loss)]);
  if (j.train_class_counts.length) rows.push(["training rows per class", j.train_class_counts.map((c, i) => `${j.labels[i] ?? i}: ${c}`).join(", ")]);
  if (j.resampled_class_counts.length) rows.push(["after resampling", j.resampled_class_counts.map((c, i) => `${j.labels[i] ?? i}: ${c}`).join(", ")]);
  if (s.early_stopping) rows.push(["early stopping", `patience ${s.early_stopping.patience}, min_delta ${s.early_stopping.min_delta}`]);
  return el("table", { class: "kv" }, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
}

// The epoch panel: an epoch slider, the confusion matrix heat map (counts or row
// normalised), per-class precision/recall/F1, ROC and PR curves with AUC/AP, and the
// per-layer diagnostics with warnings.
function epochView(history) {
  const slider = el("input", { type: "range", id: "epoch-slider", min: 0, max: 0, step: 1, value: 0 });
  const label = el("span", { id: "epoch-label" }, "no epoch yet");
  const follow = el("input", { type: "checkbox", id: "epoch-follow", checked: "" });
  const normalise = el("select", { id: "cm-mode" }, el("option", { value: "counts" }, "counts"), el("option", { value: "rows" }, "row-normalised"));
  const split = el("select", { id: "split" }, el("option", { value: "validation" }, "validation"), el("option", { value: "train" }, "training"));
  const matrix = el("div", { id: "confusion" });
  const perClass = el("div", { id: "per-class" });
  const curvesTable = el("div", { id: "curves" });
  const roc = chartBox("chart-roc", "ROC (one vs rest)", { xLabel: "false positive rate", fixed: { x: [0, 1], y: [0, 1] } });
  const pr = chartBox("chart-pr", "precision-recall (one vs rest)", { xLabel: "recall", fixed: { x: [0, 1], y: [0, 1] } });
  const layers = el("div", { id: "layers" });
  const root = el("section", { id: "epoch-panel" },
    el("h2", {}, "Epoch"),
    el("div", { class: "toolbar" }, slider, " ", label, " ", el("label", {}, follow, " follow latest"), " ", split, " ", normalise),
    el("h3", {}, "Confusion matrix (rows: true class, columns: predicted)"), matrix,
    el("h3", {}, "Per class"), perClass,
    el("h3", {}, "ROC and precision-recall curves"), curvesTable,
    el("div", { class: "charts" }, roc.box, pr.box),
    el("h3", {}, "Layer diagnostics"), layers);
  let shown = -1;
  let frame = false;
  function render() {
    frame = false;
    const n = history.epochs.length;
    if (!n) return;
    slider.max = String(n - 1);
    if (follow.checked) slider.value = String(n - 1);
    const i = Number(slider.value);
    const e = history.epochs[i];
    const m = (split.value === "validation" && e.validation) || e.train;
    const which = m === e.train ? "training" : "validation";
    label.textContent = `${e.ensemble ? "ensemble" : runName(e.run)} epoch ${e.epoch} (${i + 1} of ${n}), ${which} split`;
    root.dataset.run = String(e.run);
    root.dataset.epoch = String(e.epoch);
    root.dataset.split = which;
    if (shown === i && root.dataset.mode === normalise.value && root.dataset.which === which) return;
    shown = i;
    root.dataset.mode = normalise.value;
    root.dataset.which = which;
    matrix.replaceChildren(confusionTable(m.confusion_matrix, normalise.value === "rows"));
    perClass.replaceChildren(perClassTable(m));
    curvesTable.replaceChildren(curvesSummary(m));
    roc.chart.clear(); pr.chart.clear();
    for (const c of m.curves || []) {
      if (c.roc) roc.chart.setSeries(c.label, c.roc.fpr, c.roc.tpr);
      if (c.pr) pr.chart.setSeries(c.label, c.pr.recall, c.pr.precision);
    }
    layers.replaceChildren(layersTable(e.layers || []));
  }
  const ask = () => { if (!frame) { frame = true; requestAnimationFrame(render); } };
  slider.addEventListener("input", () => { follow.checked = Number(slider.value) === history.epochs.length - 1; ask(); });
  for (const x of [normalise, split, follow]) x.addEventListener("change", ask);
  return { root, added: ask };
}

function confusionTable(cm, rows) {
  const k = cm.labels.length;
  let max = 0;
  const rowSum = [];
  for (let r = 0; r < k; r++) {
    let s = 0;
    for (let c = 0; c < k; c++) { s += cm.counts[r * k + c]; max = Math.max(max, cm.counts[r * k + c]); }
    rowSum.push(s);
  }
  const head = el("tr", {}, el("th", {}, ""), cm.labels.map((l) => el("th", {}, l)));
  const body = [];
  for (let r = 0; r < k; r++) {
    const cells = [];
    for (let c = 0; c < k; c++) {
      const count = cm.counts[r * k + c];
      const frac = rowSum[r] ? count / rowSum[r] : 0;
      const intensity = rows ? frac : (max ? count / max : 0);
      cells.push(el("td", {
        class: "cell", "data-count": count, "data-row": r, "data-col": c,
        style: `background: rgba(31, 119, 180, ${intensity.toFixed(3)}); color: ${intensity > 0.55 ? "#fff" : "#000"}`,
        title: `true ${cm.labels[r]}, predicted ${cm.labels[c]}: ${count} (${pct(frac)} of the row)`,
      }, rows ? frac.toFixed(3) : String(count)));
    }
    body.push(el("tr", {}, el("th", {}, cm.labels[r]), cells));
  }
  return el("table", { class: "heatmap" }, head, body);
}

function perClassTable(m) {
  return el("table", { class: "metrics" },
    el("tr", {}, ["class", "precision", "recall", "F1", "support", "ROC AUC"].map((h) => el("th", {}, h))),
    m.per_class.map((c) => el("tr", {}, el("td", {}, c.label), el("td", {}, fmt(c.precision)), el("td", {}, fmt(c.recall)),
      el("td", {}, fmt(c.f1)), el("td", {}, c.support), el("td", {}, c.roc_auc == null ? "—" : fmt(c.roc_auc)))),
    el("tr", { class: "avg" }, el("td", {}, "macro"), el("td", {}, fmt(m.macro_avg.precision)), el("td", {}, fmt(m.macro_avg.recall)), el("td", {}, fmt(m.macro_avg.f1)), el("td", {}, ""), el("td", {}, m.roc_auc == null ? "—" : fmt(m.roc_auc))),
    el("tr", { class: "avg" }, el("td", {}, "accuracy"), el("td", { colspan: 5 }, fmt(m.accuracy))));
}

function curvesSummary(m) {
  if (!m.curves || !m.curves.length) return el("p", { class: "note" }, "no curves for this epoch (kept for the newest epochs only)");
  return el("table", { class: "metrics" },
    el("tr", {}, ["class", "ROC AUC", "average precision"].map((h) => el("th", {}, h))),
    m.curves.map((c, i) => el("tr", { "data-class": c.label },
      el("td", {}, c.label),
      el("td", { class: "auc", "data-value": m.per_class[i] && m.per_class[i].roc_auc != null ? m.per_class[i].roc_auc : "" },
        m.per_class[i] && m.per_class[i].roc_auc != null ? m.per_class[i].roc_auc.toFixed(4) : "—"),
      el("td", { class: "ap", "data-value": c.pr ? c.pr.average_precision : "" }, c.pr ? c.pr.average_precision.toFixed(4) : "—"))));
}

// Warnings: saturated or dead units, vanishing or exploding updates (update/weight ratio
// far from the usual ~1e-3), gradients that are not finite.
function layerWarnings(l) {
  const w = [];
  if (l.saturated_fraction != null && l.saturated_fraction > 0.1) w.push(`${pct(l.saturated_fraction)} saturated`);
  if (l.dead_fraction != null && l.dead_fraction > 0.5) w.push(`${pct(l.dead_fraction)} dead`);
  if (!Number.isFinite(l.gradient_norm)) w.push("gradient not finite");
  if (l.update_ratio > 1e-1) w.push("updates too large");
  else if (l.update_ratio > 0 && l.update_ratio < 1e-5) w.push("updates vanishing");
  return w;
}

function layersTable(layers) {
  if (!layers.length) return el("p", { class: "note" }, "no diagnostics in this epoch (spec.layer_diagnostics)");
  const opt = (v) => (v == null ? "—" : fmt(v));
  return el("table", { class: "metrics" },
    el("tr", {}, ["layer", "act. mean", "act. std", "saturated", "dead", "weight norm", "grad norm", "update ratio", "warnings"].map((h) => el("th", {}, h))),
    layers.map((l) => {
      const w = layerWarnings(l);
      return el("tr", { class: w.length ? "warn" : "" }, el("td", {}, l.name), el("td", {}, opt(l.activation_mean)), el("td", {}, opt(l.activation_std)),
        el("td", {}, l.saturated_fraction == null ? "—" : pct(l.saturated_fraction)), el("td", {}, l.dead_fraction == null ? "—" : pct(l.dead_fraction)),
        el("td", {}, fmt(l.weight_norm)), el("td", {}, fmt(l.gradient_norm)), el("td", {}, fmt(l.update_ratio)), el("td", {}, w.join("; ")));
    }));
}

// ---------------------------------------------------------------- the compare page

async function comparePage(ids) {
  const iter = chartBox("compare-iteration-loss", "training loss per iteration", { xLabel: "step" });
  const train = chartBox("compare-train-loss", "training loss per epoch", { xLabel: "epoch" });
  const val = chartBox("compare-val-loss", "validation loss per epoch", { xLabel: "epoch" });
  const acc = chartBox("compare-val-accuracy", "validation accuracy per epoch", { xLabel: "epoch" });
  const f1 = chartBox("compare-val-f1", "validation macro F1 per epoch", { xLabel: "epoch" });
  const smoothing = el("input", { type: "range", min: 0, max: 0.99, step: 0.01, value: 0.6 });
  const charts = [iter.chart, train.chart, val.chart, acc.chart, f1.chart];
  smoothing.addEventListener("input", () => charts.forEach((c) => c.setSmoothing(Number(smoothing.value))));
  charts.forEach((c) => c.setSmoothing(0.6));
  const legend = el("ul", { id: "compare-jobs" });
  app.replaceChildren(el("h1", {}, "Compare"), legend,
    el("div", { class: "toolbar" }, el("label", {}, "smoothing ", smoothing)),
    el("div", { class: "charts" }, iter.box, train.box, val.box, acc.box, f1.box));
  for (const id of ids) {
    let job;
    try { job = await api(`/api/jobs/${id}`); } catch (e) { legend.append(el("li", { class: "bad" }, String(e.message))); continue; }
    const name = `${job.name || "job"} ${id.slice(0, 6)}`;
    legend.append(el("li", {}, el("a", { href: "#/job/" + id }, name), " ", statusBadge(job.status)));
    const h = new JobHistory(job);
    h.listeners.push((e) => {
      const s = e.run === 0 ? name : `${name} m${e.run}`;
      if (e.type === "iteration") iter.chart.push(s, e.global_step, e.loss);
      if (e.type === "epoch" && !e.ensemble) {
        train.chart.push(s, e.epoch, e.train.loss);
        if (e.validation) {
          val.chart.push(s, e.epoch, e.validation.loss);
          acc.chart.push(s, e.epoch, e.validation.accuracy);
          f1.chart.push(s, e.epoch, e.validation.macro_avg.f1);
        }
      }
    });
    follow(id, h);
  }
}

// ---------------------------------------------------------------- routing

function route() {
  for (const f of cleanup) f();
  cleanup = [];
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === "#/" + (parts[0] || ""));
  if (parts[0] === "job" && parts[1]) jobPage(parts[1]);
  else if (parts[0] === "compare") {
    const ids = (parts[1] || "").split(",").filter(Boolean);
    if (ids.length) comparePage(ids);
    else app.replaceChildren(el("h1", {}, "Compare"), el("p", {}, "Select two or more jobs on the Jobs page and press “Compare selected”."));
  } else jobsPage(new URLSearchParams(query || ""));
}

window.addEventListener("hashchange", route);
route();
})();
