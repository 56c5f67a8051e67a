// dashboard.mjs: drives ternd's dashboard (web/) in Debian's chromium with
// playwright-core, for tests/integration/test_dashboard.py, which starts
// the lab cluster and checks the cluster's side of every step.
//
//   node dashboard.mjs lab URL TOKEN SHOTS_DIR VM TO_HOST DRAIN_HOST DRAG_VM
//       the page lists the cluster; VM is migrated to TO_HOST with the
//       page's form, its progress followed to 100%; DRAIN_HOST is drained
//       with its button and seen empty, then undrained; DRAG_VM is dragged
//       onto DRAIN_HOST and seen there; then "STEP kill DRAIN_HOST" goes to
//       stderr and the page must mark that host lost once the test killed
//       it, DRAG_VM shown again elsewhere. A screenshot of each state.
//   node dashboard.mjs dr URL TOKEN SHOTS_DIR VM
//       the page's disaster-recovery table shows VM protected, with an
//       epoch number and its RPO met.
//   node dashboard.mjs load WEB_DIR SHOTS_DIR VMS HOSTS
//       the page (the files of WEB_DIR) against a simulated cluster of VMS
//       VMs on HOSTS hosts, every request answered inside the browser (no
//       ternd): how long the first picture takes, each redraw, a click.
//
// Prints one JSON object with what it saw and measured; exits 1 (with the
// reason in "error") when a step does not happen in time.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const [mode, ...args] = process.argv.slice(2);
const result = { mode, steps: [] };

async function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
}

async function shot(page, dir, name) {
  const path = `${dir}/${name}.png`;
  await page.screenshot({ path, fullPage: true });
  result.steps.push({ name, screenshot: path });
}

// Text of each VM chip per host card: {host: [vm, ...]}.
async function placement(page) {
  return page.$$eval(".host", (cards) => Object.fromEntries(cards.map((c) => [
    c.dataset.host, [...c.querySelectorAll(".vm")].map((v) => v.dataset.vm)])));
}

// The page's own complaints (script errors, console errors) go in the result.
function listen(page) {
  result.page_errors = [];
  page.on("pageerror", (e) => result.page_errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && result.page_errors.push(m.text()));
}

async function lab([url, token, dir, vm, to, drain, dragged]) {
  const b = await browser();
  const page = await b.newPage({ viewport: { width: 1200, height: 900 } });
  listen(page);
  try {
    const t0 = Date.now();
    await page.goto(`${url}/#token=${token}`);
    await page.waitForSelector(`[data-testid="vm-${vm}"]`, { timeout: 20000 });
    result.first_picture_ms = Date.now() - t0;
    result.load_event_ms = await page.evaluate(() => {
      const n = performance.getEntriesByType("navigation")[0];
      return n.loadEventEnd - n.startTime;
    });
    result.before = await placement(page);
    await shot(page, dir, "1-overview");

    await page.selectOption('[data-testid="migrate-vm"]', vm);
    await page.selectOption('[data-testid="migrate-to"]', to);
    await page.click('[data-testid="migrate-go"]');
    // Under way: its card and progress bar (a short migration may end
    // before the page shows it under way; the finished card tells).
    const bar = await page.waitForSelector(
      `[data-testid="progress-${vm}"], [data-testid="done-progress-${vm}"]`,
      { state: "attached", timeout: 30000 });
    result.saw_in_progress = (await bar.getAttribute("data-testid")) === `progress-${vm}`;
    result.percents = [Number(await bar.getAttribute("data-percent"))];
    if (result.saw_in_progress) await shot(page, dir, "2-migrating");
    const deadline = Date.now() + 120000;
    for (;;) {
      const done = await page.$(`[data-testid="done-progress-${vm}"]`);
      if (done) {
        result.percents.push(Number(await done.getAttribute("data-percent")));
        result.result = await page.$eval(`[data-testid="done-${vm}"]`, (e) => e.textContent);
        break;
      }
      const live = await page.$(`[data-testid="progress-${vm}"]`);
      if (live) result.percents.push(Number(await live.getAttribute("data-percent")));
      if (Date.now() > deadline) throw new Error(`the migration of ${vm} did not finish`);
      await page.waitForTimeout(100);
    }
    await page.waitForSelector(`[data-testid="vms-${to}"] [data-testid="vm-${vm}"]`,
      { state: "attached", timeout: 30000 });
    result.after_migration = await placement(page);
    await shot(page, dir, "3-migrated");

    await page.click(`[data-testid="drain-${drain}"]`);
    await page.waitForSelector(`[data-testid="undrain-${drain}"]`, { timeout: 20000 });
    await page.waitForFunction((h) =>
      document.querySelector(`[data-testid="vms-${h}"]`)?.children.length === 0,
    drain, { timeout: 120000 });
    result.after_drain = await placement(page);
    await shot(page, dir, "4-drained");

    await page.click(`[data-testid="undrain-${drain}"]`);
    await page.waitForSelector(`[data-testid="drain-${drain}"]`, { timeout: 20000 });
    await page.dragAndDrop(`[data-testid="vm-${dragged}"]`, `[data-testid="host-${drain}"]`);
    await page.waitForSelector(`[data-testid="vms-${drain}"] [data-testid="vm-${dragged}"]`,
      { state: "attached", timeout: 120000 });
    result.after_drag = await placement(page);
    await shot(page, dir, "5-dragged");

    // The test kills the host; the page marks it lost, and shows the VM
    // where the controller starts it again.
    process.stderr.write(`STEP kill ${drain}\n`);
    await page.waitForSelector(`[data-testid="host-${drain}"].lost`,
      { state: "attached", timeout: 60000 });
    await page.waitForFunction(([h, v]) => {
      const chip = document.querySelector(`[data-testid="vm-${v}"]`);
      return chip && !chip.closest(`[data-testid="host-${h}"]`);
    }, [drain, dragged], { timeout: 120000 });
    result.after_loss = await placement(page);
    await shot(page, dir, "6-host-lost");
  } catch (e) {
    // What the page said, for the test's report.
    result.page_messages = await page.$$eval("#migrate-msg, #error", (els) =>
      els.map((el) => el.textContent)).catch(() => null);
    await shot(page, dir, "failed").catch(() => {});
    throw e;
  } finally {
    await b.close();
  }
}

async function dr([url, token, dir, vm]) {
  const b = await browser();
  const page = await b.newPage({ viewport: { width: 1200, height: 900 } });
  listen(page);
  try {
    await page.goto(`${url}/#token=${token}`);
    const row = await page.waitForFunction((v) => [...document.querySelectorAll("#dr tr")]
      .map((r) => [...r.cells].map((c) => c.textContent.replace(/\s+/g, " ").trim()).join(" "))
      .find((t) => t.startsWith(`${v} `) && /epoch [1-9]/.test(t) && t.includes("RPO met")),
    vm, { timeout: 60000 });
    result.dr_row = await row.jsonValue();
    await shot(page, dir, "dr-protected");
  } catch (e) {
    result.dr_table = await page.$eval("#dr", (t) => t.textContent).catch(() => null);
    await shot(page, dir, "dr-failed").catch(() => {});
    throw e;
  } finally {
    await b.close();
  }
}

// A picture of a cluster as ternd's event stream gives it.
function picture(nvms, nhosts, tick) {
  const hosts = [], vms = [];
  for (let h = 0; h < nhosts; h++)
    hosts.push({ name: `h${h}`, ip: `10.0.0.${h}`, api: "", schedulable: h !== 1,
      cpu_milli: 16000, mem_bytes: 64 << 30, cpu_used_milli: 0, mem_used_bytes: 0,
      cpu_util: 0, vms: [] });
  for (let v = 0; v < nvms; v++) {
    const h = hosts[(v * 7 + (v < 3 ? tick : 0)) % nhosts];
    h.vms.push(`vm${v}`);
    h.cpu_used_milli += 250 + (v % 4) * 100;
    h.mem_used_bytes += 256 << 20;
    vms.push({ name: `vm${v}`, host: h.name, state: "running", mem_bytes: 256 << 20, cpus: 1,
      cpu_milli: 250, dirty_bytes_s: 0, disk_bytes_s: 0, net_bytes_s: 0, owner_revision: v });
  }
  const migrations = [0, 1, 2].map((i) => ({ vm: `vm${i}`, from: "h0", to: "h2",
    started_ms: 1000 + i, reason: "balancing", progress: { phase: "precopy", pass: 1,
      pages_sent: tick * 1000, pages_remaining: 65536 - tick * 1000, dirty_rate_pages_s: 2000,
      bandwidth_bytes_s: 200 << 20, expected_downtime_ms: 20, elapsed_ms: tick * 500,
      downtime_ms: 0, percent: Math.min(99, tick * 2) } }));
  const history = Array.from({ length: 20 }, (_, i) => ({ vm: `vm${10 + i}`, from: "h3",
    to: "h4", started_ms: i, reason: "draining h3", result: "completed", total_ms: 1500,
    downtime_ms: 12 }));
  const decisions = Array.from({ length: 30 }, (_, i) => ({ what: `move vm${i} h0 -> h2`,
    reason: "balancing: cpu imbalance 0.31 -> 0.27" }));
  return { hosts, imbalance: 0.2, vms, migrations, history, decisions,
    dr: { site: "sim", protected: [], standbys: [] }, site: "sim", served_by: "h0", at_ms: tick };
}

async function load([web, dir, nvms, nhosts]) {
  nvms = Number(nvms);
  nhosts = Number(nhosts);
  const b = await browser();
  const page = await b.newPage({ viewport: { width: 1400, height: 1000 } });
  listen(page);
  let tick = 0;
  // Twenty pictures per stream, as ternd would send them, then the stream
  // ends and the page reconnects.
  // The page's files as ternd serves them (GET / and /ui/NAME).
  const types = { html: "text/html", js: "text/javascript", css: "text/css" };
  await page.route("http://tern.sim/**", (route) => {
    const path = new URL(route.request().url()).pathname;
    const name = path === "/" ? "index.html" : path.replace(/^\/ui\//, "");
    try {
      route.fulfill({ status: 200, contentType: types[name.split(".").pop()] || "text/plain",
        body: readFileSync(`${web}/${name}`) });
    } catch {
      route.fulfill({ status: 404, body: "no such file" });
    }
  });
  await page.route("**/v1/events", (route) => {
    let body = "";
    for (let i = 0; i < 20; i++) body += `data: ${JSON.stringify(picture(nvms, nhosts, tick++))}\n\n`;
    route.fulfill({ status: 200, headers: { "Content-Type": "text/event-stream" }, body });
  });
  await page.route("**/v1/migrations", (route) => route.fulfill({ status: 200,
    contentType: "application/json", body: JSON.stringify({ migrations: [],
      history: picture(nvms, nhosts, 0).history.map((h) => ({ ...h,
        samples: [[0, 65536, 2000], [700, 20000, 2100], [1400, 100, 1900]] })) }) }));
  try {
    const t0 = Date.now();
    await page.goto("http://tern.sim/#token=simulated-token-000000");
    await page.waitForSelector(`[data-testid="vm-vm${nvms - 1}"]`, { timeout: 20000 });
    result.first_picture_ms = Date.now() - t0;
    result.vm_chips = await page.$$eval(".vm", (e) => e.length);
    await shot(page, dir, `load-${nvms}-vms`);
    // Let a few streams' worth of pictures arrive, then read how long the
    // page took to draw each (app.js keeps the last 100).
    await page.waitForFunction(() => window.ternDashboard.renderMs.length >= 60,
      null, { timeout: 20000 });
    result.render_ms = await page.evaluate(() => window.ternDashboard.renderMs.slice());
    // A click while the pictures keep coming: time until the form answers.
    const clicks = [];
    for (let i = 0; i < 5; i++) {
      const t = Date.now();
      await page.selectOption('[data-testid="migrate-vm"]', `vm${50 + i}`);
      clicks.push(Date.now() - t);
    }
    result.click_ms = clicks;
    result.long_tasks_ms = await page.evaluate(() => new Promise((ok) => {
      const seen = [];
      new PerformanceObserver((l) => l.getEntries().forEach((e) => seen.push(e.duration)))
        .observe({ type: "longtask", buffered: true });
      setTimeout(() => ok(seen), 3000);
    }));
  } finally {
    await b.close();
  }
}

try {
  if (mode === "lab") await lab(args);
  else if (mode === "load") await load(args);
  else if (mode === "dr") await dr(args);
  else throw new Error(`unknown mode ${mode} (lab, dr or load)`);
  console.log(JSON.stringify(result));
} catch (e) {
  result.error = String(e.stack || e);
  console.log(JSON.stringify(result));
  process.exit(1);
}
