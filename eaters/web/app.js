// netdumplings web dashboard: an eater that runs in the browser.
//
// It connects to the hub's eater WebSocket (two lanes, see lanes.js), asks for batched
// JSON, folds every dumpling into small per-panel models as it arrives, and draws the DOM
// at most a few times a second - so a busy hub costs the tab a bounded amount of work.
// The filter (filter.js) decides what the list, the protocol tables, the statistics and
// the exports show; its hub share is the data lane's subscription.

import { $, cell, row, fillBody, fmtCount, fmtRate, timeCell, timeOf,
  chefColor, rowDumpling, openable, fmtDateTime } from "./util.js";
import { parse, compile, split, FilterError } from "./filter.js";
import { showFilterError, showWhere, filterInUrl } from "./filterbar.js";
import { config, loadConfig, setToken, Lane } from "./lanes.js";
import { createPanels } from "./panels.js";
import { createChart } from "./chart.js";
import { createDetail, flowKey } from "./detail.js";
import { createStats, createStatsPanel } from "./talkers.js";
import { jsonLines, csv, har, download } from "./export.js";
import { createIngest, COUNT_CHEF, STATUS_CHEF, LIST_PER_SECOND } from "./ingest.js";

const STREAM_ROWS = 500;        // rows in the live list
const RENDER_EVERY_MS = 150;    // at most ~7 DOM updates per second
const BUSY_RENDER_MS = 400;     // ... and ~2.5 when more than BUSY_RATE dumplings/s arrive,
const BUSY_RATE = 1000;         // so the page keeps time for clicks and frames
const BUSY_ROWS = 100;          // rows in the live list, and added per render, when busy
const BUSY_PANEL_MS = 1000;     // protocol tables and statistics redrawn at most this often when busy
const BEHIND_SHOWN_S = 2;       // "behind by N s" from this lag on

const PANELS = ["packets", "hub", "http", "dns", "fluentd", "zmtp", "arp", "ca", "stats"];

// -- models ----------------------------------------------------------------------------

const model = {
  received: 0,            // data-lane dumplings (notices not counted)
  missed: 0,              // the hub's missed notices on the data lane
  statusMissed: 0,        // ... and on the status lane
  duplicates: 0,          // resent after a hub restart, dropped
  aggregated: 0,          // counted and in the statistics, but not kept in the list (load)
  shownMatch: 0,          // dumplings that passed the filter
  rateWindow: [],         // [performance.now(), count] per received message
  stream: [],             // newest last: {id, t, at, kitchen, chef, summary, d, size, ok}
  streamBytes: 0,
  byId: new Map(),
  chefs: new Map(), kitchens: new Map(),
  http: [], httpCount: 0, httpErrors: 0,
  dns: [], dnsCount: 0,
  fluentd: new Map(), zmtp: new Map(), arp: new Map(), arpAlerts: [], arpAlertKeys: new Map(),
  ca: new Map(), caCount: 0,
  packets: { last: new Map(), samples: [], totals: new Map(), latest: new Map(), colors: new Map() },
  hub: { status: null, prev: null, rateIn: null, rateOut: null },
  unlisted: 0,            // kept (in the tables, exports, flows) but not given a row, under load
  rateNow: 0,             // dumplings/s over the last 5 s
  lag: null,              // seconds between a dumpling's making and its arrival here
  listBudget: { sec: 0, n: 0 },
};
const dirty = new Set();
const panels = createPanels(model, dirty);
const chart = createChart(model, dirty);
const stats = createStats();

// -- the filter --------------------------------------------------------------------------

const ui = { paused: false, pausedAt: 0, shownUpTo: 0, text: "", ast: null, pred: () => true, where: split(null) };
const { ingestData, ingestSide, drain, view, fromHub } = createIngest({ model, dirty, ui, panels, chart, stats });

/** Apply a filter expression; false (and the error shown) when it does not parse. */
function applyFilter(text, { push = true } = {}) {
  let ast;
  try {
    ast = parse(text);
  } catch (err) {
    if (!(err instanceof FilterError)) throw err;
    showFilterError(text, err);
    return false;
  }
  showFilterError(text, null);
  const before = JSON.stringify(ui.where.subscription);
  ui.text = text;
  ui.ast = ast;
  ui.pred = compile(ast);
  ui.where = split(ast);
  $("filter").value = text;
  $("filter").dataset.pending = "false";
  showWhere(ast, ui.where);
  if (push) filterInUrl(text);
  if (JSON.stringify(ui.where.subscription) !== before) {
    if (data.ws || data.timer) data.restart();
    if (side.ws || side.timer) side.restart();
  }
  rebuild();
  return true;
}

function addFilter(expr) {
  const cur = ui.text.trim();
  applyFilter(cur ? `${ui.ast && ui.ast.op === "or" ? `(${cur})` : cur} and ${expr}` : expr);
}

// Empty the filtered models and fold the kept dumplings that pass the filter into them
// again: the panels then show what the filter lets through of the kept history.
function rebuild() {
  drain();
  model.http.length = 0; model.httpCount = 0; model.httpErrors = 0;
  model.dns.length = 0; model.dnsCount = 0;
  model.fluentd.clear(); model.zmtp.clear(); model.arp.clear();
  model.arpAlerts.length = 0; model.arpAlertKeys.clear();
  model.ca.clear(); model.caCount = 0;
  model.shownMatch = 0;
  stats.reset();
  for (const it of model.stream) {
    it.ok = ui.pred(it);
    if (it.ok) view(it);
  }
  for (const k of [...PANELS, "filters"]) dirty.add(k);
  scheduleRender();
}

// -- lanes -------------------------------------------------------------------------------

// Does the data lane's subscription leave PacketCountChef out? Then the status lane asks
// for it, so the chart keeps drawing whatever the filter.
function countsOnSide() {
  const s = ui.where.subscription;
  return (s.chefs && !s.chefs.includes(COUNT_CHEF)) || (s.drivers && !s.drivers.includes("interval")) || !!s.kitchens;
}

const data = new Lane("data", {
  hello: () => ({ ...ui.where.subscription }),
  onData: (obj, text) => {
    const now = performance.now();
    let n = 0;
    if (Array.isArray(obj)) {
      const each = obj.length ? text.length / obj.length : 0;
      for (const d of obj) { ingestData(d, each); n++; }
    } else { ingestData(obj, text.length); n = 1; }
    model.rateWindow.push([now, n]);
    if (model.rateWindow.length > 5000) model.rateWindow.splice(0, 1000);
    scheduleRender();
  },
  onState: (state, text) => {
    const el = $("conn");
    el.dataset.state = state;
    el.dataset.connects = String(data.connects);
    $("conn-text").textContent = text;
  },
  onAuth: () => { side.stop(); $("token-form").hidden = false; $("token-input").focus(); },
  // After a hub restart (nd-hub --startup-grace holds resent dumplings until the first
  // eater says hello) the data lane must be that first eater: the status lane waits
  // for it, else the hub would relay the held dumplings before the data lane is back.
  onWelcome: () => { if (!side.ws && !ui.sideless) side.connect(); },
});

const side = new Lane("status", {
  canRetry: () => data.up,
  hello: () => {
    ui.sideCounts = countsOnSide();
    return { eater_name: `${config.eater_name || "nd-web"} (status)`,
      chefs: ui.sideCounts ? [STATUS_CHEF, COUNT_CHEF] : [STATUS_CHEF] };
  },
  onData: (obj) => {
    for (const d of Array.isArray(obj) ? obj : [obj]) ingestSide(d);
    scheduleRender();
  },
  onState: (state) => { $("panel-hub").dataset.lane = state; },
  onWelcome: (w) => {
    // A 0.5 hub sends no welcome and ignores subscriptions: one lane is enough there.
    ui.sideless = !w;
    if (!w) { ui.sideCounts = false; side.stop(); }
  },
});

// -- rendering ---------------------------------------------------------------------------

let renderPending = false;
let lastRender = 0;
let lastSlow = 0;
const SLOW_PANELS = new Set(["http", "dns", "fluentd", "zmtp", "arp", "ca", "stats"]);

// Coalesce: many messages -> one render, no more often than RENDER_EVERY_MS. A hidden
// tab gets no animation frames, so fall back to a timer there (models stay current).
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  const every = model.rateNow > BUSY_RATE ? BUSY_RENDER_MS : RENDER_EVERY_MS;
  const wait = Math.max(0, every - (performance.now() - lastRender));
  setTimeout(() => {
    if (document.hidden) render();
    else requestAnimationFrame(render);
  }, wait);
}

function render() {
  renderPending = false;
  lastRender = performance.now();
  drain();
  renderHeader();
  if (ui.paused) {
    // Pause freezes every panel: the models keep up, the screen does not move.
    renderPausedBadge();
    return;
  }
  // When busy, the protocol tables and the statistics wait their turn (their marks stay).
  const busy = model.rateNow > BUSY_RATE;
  const slowOk = !busy || lastRender - lastSlow >= BUSY_PANEL_MS;
  if (slowOk) lastSlow = lastRender;
  const todo = new Set();
  for (const k of dirty) if (slowOk || !SLOW_PANELS.has(k)) todo.add(k);
  for (const k of todo) dirty.delete(k);
  if (dirty.size) scheduleRender();
  // Each panel on its own: one that chokes on an odd payload must not leave the others
  // (whose dirty marks are already cleared) stale.
  const draw = [
    ["stream", () => (todo.has("stream") || todo.has("filters")) && renderStream(todo.has("filters"))],
    ["packets", () => todo.has("packets") && chart.renderPackets()],
    ["hub", () => todo.has("hub") && panels.renderHub()],
    ["http", () => todo.has("http") && panels.renderHttp()],
    ["dns", () => todo.has("dns") && panels.renderDns()],
    ["fluentd", () => todo.has("fluentd") && panels.renderFluentd()],
    ["zmtp", () => todo.has("zmtp") && panels.renderZmtp()],
    ["arp", () => todo.has("arp") && panels.renderArp()],
    ["ca", () => todo.has("ca") && panels.renderCa()],
    ["stats", () => todo.has("stats") && statsPanel.render(Date.now() / 1000)],
  ];
  for (const [name, fn] of draw) {
    try {
      fn();
    } catch (err) {
      console.warn("netdumplings: could not draw the", name, "panel", err);
    }
  }
  if (todo.has("hub")) $("hub-lane-note").textContent = model.statusMissed ? `${fmtCount(model.statusMissed)} status dumplings missed` : "";
}

function renderHeader() {
  $("count-total").textContent = fmtCount(model.received);
  const now = performance.now();
  const w = model.rateWindow;
  while (w.length && now - w[0][0] > 5000) w.shift();
  const n = w.reduce((a, x) => a + x[1], 0);
  const span = w.length ? Math.max(1000, now - w[0][0]) / 1000 : 1;
  model.rateNow = n / span;
  $("rate-total").textContent = fmtRate(model.rateNow);
  $("missed-wrap").hidden = model.missed === 0;
  $("missed-total").textContent = fmtCount(model.missed);
  $("aggregated-wrap").hidden = model.aggregated === 0;
  $("aggregated-total").textContent = fmtCount(model.aggregated);
  // Behind: how old the newest dumpling was when it got here (kitchen's clock against
  // this machine's: on other machines their clocks must agree to the second).
  const fresh = w.length && now - w[w.length - 1][0] < 2000;
  const behind = fresh && model.lag !== null && model.lag > BEHIND_SHOWN_S;
  $("behind").hidden = !behind;
  if (behind) {
    $("behind").textContent = `behind by ${model.lag.toFixed(1)} s`;
    $("behind").dataset.seconds = model.lag.toFixed(1);
  }
}

function renderPausedBadge() {
  const waiting = model.stream.filter((it) => it.id > ui.pausedAt && it.ok).length;
  const badge = $("paused-badge");
  badge.hidden = false;
  badge.textContent = `paused · ${waiting} new`;
  badge.dataset.waiting = String(waiting);
}

// Live list -----------------------------------------------------------------------------

function streamRow(item) {
  const tr = row([
    timeCell(item.t, item.at),
    cell(item.kitchen, "kitchen"),
    cell(item.chef, `chef chef-${chefColor(item.chef)}`),
    cell(item.summary, "summary", item.summary),
  ], { id: String(item.id), chef: item.chef, kitchen: item.kitchen });
  return openable(tr, item.d);
}

function renderStream(full) {
  const tbody = $("stream-table").tBodies[0];
  const newest = model.stream.length ? model.stream[model.stream.length - 1].id : 0;
  $("paused-badge").hidden = true;
  if (full) {
    // Newest first, at most STREAM_ROWS that pass the filter.
    const rows = [];
    for (let i = model.stream.length - 1; i >= 0 && rows.length < STREAM_ROWS; i--) {
      if (model.stream[i].ok) rows.push(streamRow(model.stream[i]));
    }
    fillBody(tbody, rows, "no dumplings match", 4);
  } else {
    // Only what arrived since the last render, on top; trim the bottom. Under load only
    // the newest BUSY_ROWS of each render: building and laying out hundreds of rows
    // several times a second is what would make the page fall behind.
    const fresh = [];
    const cap = model.rateNow > BUSY_RATE ? BUSY_ROWS : STREAM_ROWS;
    let skipped = 0;
    for (let i = model.stream.length - 1; i >= 0; i--) {
      const it = model.stream[i];
      if (it.id <= ui.shownUpTo) break;
      if (!it.ok) continue;
      if (fresh.length < cap) fresh.push(streamRow(it)); else skipped++;
    }
    model.unlisted += skipped;
    if (fresh.length) {
      const empty = tbody.querySelector("td.empty");
      if (empty) empty.parentElement.remove();
      const frag = document.createDocumentFragment();
      for (const tr of fresh) frag.appendChild(tr);
      tbody.insertBefore(frag, tbody.firstChild);
      while (tbody.rows.length > cap) tbody.deleteRow(-1);
    }
  }
  ui.shownUpTo = newest;
  const shown = tbody.querySelectorAll("tr[data-id]").length;
  $("stream-note").textContent = `${fmtCount(shown)} shown · ${fmtCount(model.shownMatch)} match of ` +
    `${fmtCount(model.received)} · ${fmtCount(model.chefs.size)} chefs · ${fmtCount(model.kitchens.size)} kitchens` +
    (model.aggregated ? ` · ${fmtCount(model.aggregated)} counted only (over ${fmtCount(LIST_PER_SECOND)}/s)` : "") +
    (model.unlisted ? ` · ${fmtCount(model.unlisted)} kept without a row (over ${BUSY_ROWS} per update)` : "") +
    (model.duplicates ? ` · ${fmtCount(model.duplicates)} repeats dropped` : "");
}

// -- detail, statistics, export ----------------------------------------------------------

const itemOf = (d) => model.stream.find((it) => it.d === d) ||
  { id: 0, t: timeOf(d), at: null, kitchen: fromHub(d) ? "hub" : String(d.metadata.kitchen),
    chef: String(d.metadata.chef), summary: "", d };

const detail = createDetail({
  flowItems: (item) => {
    const key = flowKey(item);
    return key === null ? null : model.stream.filter((it) => flowKey(it) === key);
  },
  byId: (id) => model.byId.get(id),
  timeText: (it) => fmtDateTime(it.t),
});

const statsPanel = createStatsPanel(stats, {
  addFilter,
  layers: () => model.packets.totals,
  redraw: () => { dirty.add("stats"); scheduleRender(); },
});

function filteredItems() {
  return model.stream.filter((it) => it.ok);
}

function doExport(kind) {
  const items = filteredItems();
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  if (kind === "jsonl") download(jsonLines(items), `dumplings-${stamp}.jsonl`, "application/x-ndjson");
  else if (kind === "csv") download(csv(items), `dumplings-${stamp}.csv`, "text/csv");
  else download(har(items, model.hub.status?.hub_version ?? ""), `http-${stamp}.har`, "application/json");
}

// -- wiring ------------------------------------------------------------------------------

function setPaused(p) {
  ui.paused = p;
  const btn = $("pause");
  btn.textContent = p ? "Resume" : "Pause";
  btn.setAttribute("aria-pressed", String(p));
  document.body.classList.toggle("paused", p);
  if (p) {
    ui.pausedAt = model.stream.length ? model.stream[model.stream.length - 1].id : 0;
  } else {
    $("paused-badge").hidden = true;
    for (const k of [...PANELS, "filters"]) dirty.add(k);
  }
  scheduleRender();
}

// Rows of every table: click, or Enter / Space on a focused row, opens the detail; the
// arrow keys walk the rows.
function wireRows(tbody) {
  tbody.addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr");
    const d = tr && rowDumpling.get(tr);
    if (d) { detail.open(itemOf(d)); markSelected(tr); }
  });
  tbody.addEventListener("keydown", (ev) => {
    const tr = ev.target.closest("tr");
    if (!tr) return;
    if (ev.key === "Enter" || ev.key === " ") {
      const d = rowDumpling.get(tr);
      if (d) { ev.preventDefault(); detail.open(itemOf(d)); markSelected(tr); }
    } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      const next = ev.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (next) { ev.preventDefault(); next.focus(); }
    }
  });
}

function markSelected(tr) {
  for (const x of document.querySelectorAll("tr.selected")) x.classList.remove("selected");
  tr.classList.add("selected");
}

function wire() {
  $("pause").addEventListener("click", () => setPaused(!ui.paused));
  $("clear").addEventListener("click", () => {
    model.stream.length = 0;
    model.byId.clear();
    model.streamBytes = 0;
    ui.pausedAt = 0;
    rebuild();
  });
  $("filter-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    applyFilter($("filter").value);
  });
  // Checked as one types (a mistake is marked at once), applied on Enter or Apply, as in
  // Wireshark: applying may change the hub subscription, which is a new hello each time.
  let typing = null;
  $("filter").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      const text = $("filter").value;
      try { parse(text); showFilterError(text, null); } catch (err) { showFilterError(text, err); }
      $("filter").dataset.pending = String(text !== ui.text);
    }, 150);
  });
  $("filter-clear").addEventListener("click", () => applyFilter(""));
  for (const id of ["stream-table", "http-table", "dns-table", "fluentd-table", "zmtp-table", "arp-table", "ca-table"]) {
    wireRows($(id).tBodies[0]);
  }
  $("export").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-export]");
    if (b) doExport(b.dataset.export);
  });
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token-input").value.trim();
    $("token-input").value = "";
    if (!t) return;
    setToken(t);
    $("token-form").hidden = true;
    data.attempt = 0;
    data.connect();
  });
  $("packets-legend").addEventListener("click", (ev) => {
    const li = ev.target.closest("li[data-layer]");
    if (!li) return;
    const layer = li.dataset.layer;
    if (chart.hiddenLayers.has(layer)) chart.hiddenLayers.delete(layer); else chart.hiddenLayers.add(layer);
    dirty.add("packets");
    scheduleRender();
  });
  window.addEventListener("resize", () => { dirty.add("packets"); scheduleRender(); });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) { for (const k of PANELS) dirty.add(k); scheduleRender(); }
  });
  setInterval(() => { dirty.add("stats"); scheduleRender(); }, 1000);  // rates and "behind" move with time
}

async function main() {
  wire();
  await loadConfig();
  $("hub-url").textContent = config.hub;
  const initial = new URLSearchParams(location.search).get("filter") || "";
  if (!applyFilter(initial, { push: false })) $("filter").value = initial;
  for (const k of [...PANELS, "filters"]) dirty.add(k);
  render();
  data.connect();   // the status lane follows once the data lane is welcomed
}

// For tests, benchmarks and curious people: read-only peeks at the models.
window.netdumplings = {
  get received() { return model.received; },
  get missed() { return model.missed; },
  get aggregated() { return model.aggregated; },
  get unlisted() { return model.unlisted; },
  get duplicates() { return model.duplicates; },
  get connects() { return data.connects; },
  get state() { return $("conn").dataset.state; },
  get subscription() { return { ...ui.where.subscription }; },
  get lag() { return model.lag; },
  get hubAge() { return model.hub.prev && model.hub.prev.t ? Date.now() / 1000 - model.hub.prev.t : null; },
  chefCount(chef) { return model.chefs.get(chef) || 0; },
  items(chef) { drain(); return model.stream.filter((it) => it.chef === chef).map((it) => it.d.payload); },
  rates(layer) { return chart.chartSeries().map(([, r]) => r[layer] || 0); },
  sizes() {
    return {
      stream: model.stream.length, chefs: model.chefs.size, kitchens: model.kitchens.size,
      fluentd: model.fluentd.size, zmtp: model.zmtp.size, arp: model.arp.size, ca: model.ca.size,
      arpAlertKeys: model.arpAlertKeys.size, layers: model.packets.colors.size,
      packetKitchens: model.packets.latest.size, rateWindow: model.rateWindow.length,
      endpoints: stats.m.endpoints.size, conversations: stats.m.conversations.size,
    };
  },
};

main();
