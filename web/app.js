// app.js: the cluster dashboard (docs/dashboard.md). It reads the agent's
// event stream (GET /v1/events, one JSON picture every half second) and
// acts through the same REST API as the CLI, with the cluster's bearer
// token. No framework and no build step: the page is this file, the HTML
// and the CSS, served by ternd.

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const mib = (b) => `${Math.round(b / 1048576)} MiB`;
const pct = (x) => `${Math.max(0, Math.min(100, x)).toFixed(0)}%`;

const state = {
  token: null,
  hostsSeen: new Map(),   // host name -> last picture of it, to mark lost hosts
  live: new Map(),        // migration key -> [[ms, pages remaining, dirty pages/s]]
  samples: new Map(),     // finished migration key -> its samples (GET /v1/migrations)
  rendered: {},           // section -> the JSON it was last drawn from
  last: null,
  renderMs: [],           // how long the last pictures took to draw (tests, bench)
  dragging: false,        // a VM is being dragged onto a host
};
window.ternDashboard = state;

// ---- the API -------------------------------------------------------------------

async function api(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const reply = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(reply.error || `${method} ${path}: HTTP ${r.status}`);
  return reply;
}

function showError(e) {
  $("error").textContent = e ? String(e.message || e) : "";
}

// The event stream, read with fetch (EventSource cannot send the token).
async function follow() {
  for (;;) {
    try {
      const r = await fetch("/v1/events", { headers: { Authorization: `Bearer ${state.token}` } });
      if (r.status === 401) {
        sessionStorage.removeItem("tern-token");
        return askToken("That token was refused.");
      }
      if (!r.ok) throw new Error(`the event stream: HTTP ${r.status}`);
      setLink(true);
      const reader = r.body.getReader();
      const text = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += text.decode(value, { stream: true });
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: "))
            .map((l) => l.slice(6)).join("\n");
          if (!data) continue;
          const ev = JSON.parse(data);
          if (block.startsWith("event: error")) showError(ev.error);
          else render(ev);
        }
      }
    } catch (e) {
      showError(e);
    }
    setLink(false);
    await new Promise((ok) => setTimeout(ok, 1000));
  }
}

function setLink(up) {
  const l = $("link");
  l.textContent = up ? "live" : "reconnecting";
  l.className = `link ${up ? "up" : "down"}`;
}

// ---- drawing ---------------------------------------------------------------------

// Redraws a section only when what it shows changed: 200 VMs twice a
// second must not rebuild the page twice a second.
function draw(section, data, fn) {
  // A card redrawn under a drag would lose the drag: hosts wait for the drop.
  if (section === "hosts" && state.dragging) return;
  const key = JSON.stringify(data);
  if (state.rendered[section] === key) return;
  state.rendered[section] = key;
  fn(data);
}

function render(ev) {
  const t0 = performance.now();
  drawPicture(ev);
  state.renderMs.push(performance.now() - t0);
  if (state.renderMs.length > 100) state.renderMs.shift();
}

function drawPicture(ev) {
  state.last = ev;
  showError(null);
  $("site").textContent = `site ${ev.site} · via ${ev.served_by}`;
  $("imbalance").textContent = `imbalance ${ev.imbalance.toFixed(2)}`;
  const migrating = new Map(ev.migrations.map((m) => [m.vm, m]));
  for (const h of ev.hosts) state.hostsSeen.set(h.name, h);
  const live = new Set(ev.hosts.map((h) => h.name));
  const hosts = [...state.hostsSeen.values()].map((h) => ({ ...h, lost: !live.has(h.name) }));
  draw("hosts", { hosts, vms: ev.vms, moving: [...migrating.keys()] }, drawHosts);
  draw("form", { hosts: ev.hosts.map((h) => h.name), vms: ev.vms.map((v) => v.name) }, drawForm);
  for (const m of ev.migrations) {
    const key = migrationKey(m);
    const p = m.progress;
    if (!p) continue;
    const s = state.live.get(key) || [];
    if (!s.length || s[s.length - 1][0] !== p.elapsed_ms)
      s.push([p.elapsed_ms, p.pages_remaining, p.dirty_rate_pages_s]);
    state.live.set(key, s);
  }
  drawMigrations(ev.migrations);
  draw("history", ev.history, drawHistory);
  draw("decisions", ev.decisions, drawDecisions);
  draw("dr", ev.dr, drawDr);
}

const migrationKey = (m) => `${m.vm}@${m.started_ms}`;

function drawHosts({ hosts, vms, moving }) {
  const byHost = new Map();
  for (const v of vms) {
    if (!byHost.has(v.host)) byHost.set(v.host, []);
    byHost.get(v.host).push(v);
  }
  $("hosts").innerHTML = hosts.map((h) => {
    const cls = h.lost ? "lost" : h.schedulable ? "" : "drained";
    const tag = h.lost ? '<span class="tag lost">lost</span>' :
      h.schedulable ? "" : '<span class="tag drained">drained</span>';
    const mine = h.lost ? [] : byHost.get(h.name) || [];
    const chips = mine.map((v) => `<span class="vm ${moving.includes(v.name) ? "migrating" : ""}"
        draggable="true" data-vm="${esc(v.name)}" data-testid="vm-${esc(v.name)}"
        title="${esc(v.state)}, ${mib(v.mem_bytes)}">${esc(v.name)}</span>`).join("");
    const action = h.lost ? "" : h.schedulable
      ? `<button data-drain="${esc(h.name)}" data-testid="drain-${esc(h.name)}">Drain</button>`
      : `<button data-undrain="${esc(h.name)}" data-testid="undrain-${esc(h.name)}">Undrain</button>`;
    return `<div class="host ${cls}" data-host="${esc(h.name)}" data-testid="host-${esc(h.name)}">
      <div class="title"><span>${esc(h.name)}</span>${tag}</div>
      <div class="meter">CPU ${h.cpu_used_milli} / ${h.cpu_milli} mcpu</div>
      <div class="bar cpu"><span style="width:${pct(100 * h.cpu_used_milli / h.cpu_milli)}"></span></div>
      <div class="meter">memory ${mib(h.mem_used_bytes)} / ${mib(h.mem_bytes)}</div>
      <div class="bar mem"><span style="width:${pct(100 * h.mem_used_bytes / h.mem_bytes)}"></span></div>
      <div class="vms" data-testid="vms-${esc(h.name)}">${chips}</div>${action}</div>`;
  }).join("");
}

function drawForm({ hosts, vms }) {
  const keep = (sel, names) => {
    const was = sel.value;
    sel.innerHTML = names.map((n) => `<option>${esc(n)}</option>`).join("");
    if (names.includes(was)) sel.value = was;
  };
  keep($("migrate-vm"), vms);
  keep($("migrate-to"), hosts);
}

// Pages remaining (purple) and dirty rate (orange), each scaled to its own
// maximum, over the migration's time.
function chart(samples) {
  if (!samples || samples.length < 2) return '<svg class="chart"></svg>';
  const t = samples[samples.length - 1][0] || 1;
  const line = (i) => {
    const max = Math.max(1, ...samples.map((s) => s[i]));
    return samples.map((s) => `${(260 * s[0] / t).toFixed(1)},${(68 - 64 * s[i] / max).toFixed(1)}`)
      .join(" ");
  };
  return `<svg class="chart" viewBox="0 0 260 70"><polyline class="remaining" points="${line(1)}"/>
    <polyline class="dirty" points="${line(2)}"/></svg>`;
}

function drawMigrations(list) {
  $("migrations").innerHTML = list.length ? list.map((m) => {
    const p = m.progress || { phase: "starting", percent: 0 };
    return `<div class="migration" data-testid="migration-${esc(m.vm)}">
      <div><b>${esc(m.vm)}</b> ${esc(m.from)} → ${esc(m.to)} · <span data-testid="phase-${esc(m.vm)}">${esc(p.phase)}</span>
        · pass ${p.pass ?? 0}
        <div class="bar progress"><span data-testid="progress-${esc(m.vm)}" data-percent="${p.percent}"
          style="width:${pct(p.percent)}"></span></div>
        <div class="facts">${p.percent}% · ${p.pages_remaining ?? "?"} pages to go ·
          dirty ${p.dirty_rate_pages_s ?? 0} pages/s · ${mib(p.bandwidth_bytes_s ?? 0)}/s ·
          expected downtime ${p.expected_downtime_ms ?? "?"} ms · ${esc(m.reason)}</div></div>
      ${chart(state.live.get(migrationKey(m)))}</div>`;
  }).join("") : '<p class="hint">none under way</p>';
}

async function drawHistory(list) {
  const missing = list.some((m) => !state.samples.has(migrationKey(m)));
  if (missing) {
    try {
      const all = await api("GET", "/v1/migrations");
      for (const m of all.history) state.samples.set(migrationKey(m), m.samples);
    } catch (e) {
      showError(e);
    }
  }
  $("history").innerHTML = list.slice().reverse().map((m) => {
    const ok = m.result === "completed";
    return `<div class="migration" data-testid="done-${esc(m.vm)}">
      <div><b>${esc(m.vm)}</b> ${esc(m.from)} → ${esc(m.to)} · ${esc(m.result)}
        <div class="bar progress"><span data-testid="done-progress-${esc(m.vm)}"
          data-percent="${ok ? 100 : 0}" style="width:${ok ? 100 : 0}%"></span></div>
        <div class="facts">${(m.total_ms / 1000).toFixed(2)} s · downtime ${m.downtime_ms} ms ·
          ${esc(m.reason)}</div></div>
      ${chart(state.samples.get(migrationKey(m)) || state.live.get(migrationKey(m)))}</div>`;
  }).join("") || '<p class="hint">none yet</p>';
}

function drawDecisions(list) {
  $("decisions").innerHTML = list.slice().reverse().map((d) =>
    `<li><b>${esc(d.what)}</b>: ${esc(d.reason)}</li>`).join("");
}

function drawDr(dr) {
  const rows = [];
  for (const p of dr.protected || []) {
    const s = p.status || {};
    rows.push(`<tr><td>${esc(p.vm)}</td><td>→ ${esc(p.site)}/${esc(p.host)}</td>
      <td>epoch ${s.epoch ?? "?"}</td><td>lag ${s.lag_ms ?? "?"} ms</td>
      <td>RPO ${s.rpo_met ? "met" : "NOT met"}</td><td>${s.bytes_last_epoch ?? "?"} B/epoch</td>
      <td>${esc(s.phase || p.status_error)}</td></tr>`);
  }
  for (const p of dr.standbys || []) {
    const s = p.status || {};
    rows.push(`<tr><td>${esc(p.vm)}</td><td>← ${esc(p.from_site)} (standby on ${esc(p.host)})</td>
      <td>epoch ${s.epoch ?? "?"}</td><td colspan="3"></td>
      <td>${esc(s.phase || p.status_error)}</td></tr>`);
  }
  $("dr").innerHTML = rows.length ? rows.join("") : "<tr><td>no protected VMs</td></tr>";
}

// ---- actions ---------------------------------------------------------------------

async function migrate(vm, to) {
  const msg = $("migrate-msg");
  msg.className = "msg";
  msg.textContent = `migrating ${vm} to ${to}…`;
  try {
    await api("POST", `/v1/vms/${encodeURIComponent(vm)}/migrate`, { to, reason: "dashboard" });
    msg.textContent = `${vm} is moving to ${to}`;
  } catch (e) {
    msg.className = "msg bad";
    msg.textContent = e.message;
  }
}

function wireActions() {
  $("migrate").addEventListener("submit", (e) => {
    e.preventDefault();
    migrate($("migrate-vm").value, $("migrate-to").value);
  });
  const hosts = $("hosts");
  hosts.addEventListener("click", async (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    const host = b.dataset.drain || b.dataset.undrain;
    b.disabled = true;
    try {
      await api("POST", `/v1/hosts/${encodeURIComponent(host)}/${b.dataset.drain ? "drain" : "undrain"}`);
    } catch (err) {
      showError(err);
      b.disabled = false;
    }
  });
  hosts.addEventListener("dragstart", (e) => {
    const vm = e.target.closest(".vm");
    if (!vm) return;
    state.dragging = true;
    e.dataTransfer.setData("text/plain", vm.dataset.vm);
    e.dataTransfer.effectAllowed = "move";
  });
  hosts.addEventListener("dragend", () => { state.dragging = false; });
  hosts.addEventListener("dragover", (e) => {
    const h = e.target.closest(".host");
    if (!h) return;
    e.preventDefault();
    h.classList.add("drop");
  });
  hosts.addEventListener("dragleave", (e) => e.target.closest(".host")?.classList.remove("drop"));
  hosts.addEventListener("drop", (e) => {
    const h = e.target.closest(".host");
    if (!h) return;
    e.preventDefault();
    h.classList.remove("drop");
    state.dragging = false;
    const vm = e.dataTransfer.getData("text/plain");
    if (vm) migrate(vm, h.dataset.host);
  });
}

// ---- start -----------------------------------------------------------------------

function askToken(why) {
  $("main").hidden = true;
  $("login").hidden = false;
  if (why) showError(why);
}

function start(token) {
  state.token = token;
  sessionStorage.setItem("tern-token", token);
  $("login").hidden = true;
  $("main").hidden = false;
  follow();
}

wireActions();
$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  start($("token").value.trim());
});
// #token=... in the address (tern cluster up prints such a link), else
// this tab's stored one, else ask.
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) history.replaceState(null, "", location.pathname);
const token = fromHash || sessionStorage.getItem("tern-token");
if (token) start(token);
else askToken();
