// Drives headless Debian Chromium through the dashboard for tests/browser.rs.
//
// Usage: node dashboard.mjs HTTP_URL RUNNING_JOB CANCEL_JOB SCREENSHOT_DIR
// Prints one JSON line with what the page showed; any failed expectation exits 1 with the
// reason (the Rust test prints this output).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, running, toCancel, shots] = process.argv.slice(2);
if (!shots) {
  console.error("usage: node dashboard.mjs HTTP_URL RUNNING_JOB CANCEL_JOB SCREENSHOT_DIR");
  process.exit(2);
}
// Every wait in here fails after this long instead of hanging.
const WAIT = 60_000;

const profile = mkdtempSync(join(tmpdir(), "gradstream-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 1800 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const errors = [];
let result;
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.setDefaultTimeout(WAIT);

  // The jobs table lists both jobs, live.
  await page.goto(`${base}/#/`);
  await page.waitForSelector(`tr[data-job="${running}"][data-status="RUNNING"]`);
  await page.waitForSelector(`tr[data-job="${toCancel}"]`);

  // A job: its loss chart gains points while we watch.
  await page.goto(`${base}/#/job/${running}`);
  const points = () => page.$eval("#chart-iteration-loss", (c) => Number(c.dataset.points || 0));
  await page.waitForFunction(() => Number(document.querySelector("#chart-iteration-loss")?.dataset.points || 0) > 0);
  const before = await points();
  await page.waitForFunction((n) => Number(document.querySelector("#chart-iteration-loss").dataset.points) > n, before);
  const after = await points();

  // The confusion matrix of an epoch (validation split) and the ROC view.
  await page.waitForSelector("#confusion td.cell");
  await page.uncheck("#epoch-follow");
  const panel = await page.$eval("#epoch-panel", (p) => ({ run: Number(p.dataset.run), epoch: Number(p.dataset.epoch), split: p.dataset.split }));
  const counts = await page.$$eval("#confusion td.cell", (cells) => cells.map((c) => Number(c.dataset.count)));
  const shownCounts = await page.$$eval("#confusion td.cell", (cells) => cells.map((c) => Number(c.textContent)));
  await page.selectOption("#cm-mode", "rows");
  await page.waitForFunction(() => document.querySelector("#epoch-panel").dataset.mode === "rows");
  const fractions = await page.$$eval("#confusion td.cell", (cells) => cells.map((c) => Number(c.textContent)));
  const aucs = await page.$$eval("#curves td.auc", (cells) => cells.map((c) => Number(c.dataset.value)));
  const aps = await page.$$eval("#curves td.ap", (cells) => cells.map((c) => Number(c.dataset.value)));
  await page.waitForFunction(() => Number(document.querySelector("#chart-roc").dataset.points || 0) > 0);
  const rocPoints = await page.$eval("#chart-roc", (c) => Number(c.dataset.points));
  await page.screenshot({ path: join(shots, "job.png"), fullPage: true });

  // Cancel a job from the jobs table; the table shows it CANCELLED.
  await page.goto(`${base}/#/`);
  await page.click(`button.cancel[data-job="${toCancel}"]`);
  await page.waitForSelector(`tr[data-job="${toCancel}"][data-status="CANCELLED"]`);
  await page.screenshot({ path: join(shots, "jobs.png"), fullPage: true });

  // Compare overlays both jobs' curves.
  await page.goto(`${base}/#/compare/${running},${toCancel}`);
  await page.waitForFunction(() => Number(document.querySelector("#compare-iteration-loss")?.dataset.series || 0) === 2);
  await page.screenshot({ path: join(shots, "compare.png"), fullPage: true });

  // A long history: 100,000 iterations and 1,000 epochs through the page's own charts.
  // Old points are downsampled, the newest stay exact, and the chart still draws.
  const history = await page.evaluate(async () => {
    const canvas = document.createElement("canvas");
    canvas.className = "chart";
    document.body.append(canvas);
    const chart = new window.Charts.LineChart(canvas, { title: "stress" });
    for (let i = 1; i <= 100000; i++) chart.push("loss", i, 1 / i);
    for (let e = 1; e <= 1000; e++) chart.push("val", e * 100, 2 / e);
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    const loss = chart.get("loss");
    const tail = loss.xs.slice(-1000);
    return {
      kept: loss.xs.length,
      received: loss.received,
      tailExact: tail.every((x, k) => x === 99001 + k && loss.ys[loss.ys.length - 1000 + k] === 1 / x),
      drawnPoints: Number(canvas.dataset.points),
      max: window.Charts.MAX_POINTS,
    };
  });
  if (errors.length) throw new Error("the page reported errors:\n" + errors.join("\n"));
  result = { before, after, ...panel, counts, shownCounts, fractions, aucs, aps, rocPoints, history };
} catch (e) {
  console.error(String(e && e.stack || e));
  if (errors.length) console.error("page errors:\n" + errors.join("\n"));
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
if (result) console.log(JSON.stringify(result));
