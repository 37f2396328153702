// netdumplings web dashboard: an eater that runs in the browser.
//
// It connects to the hub's eater WebSocket, asks for batched JSON (one message may carry
// many dumplings), folds every dumpling into small per-panel models as it arrives, and
// draws the DOM at most a few times a second from requestAnimationFrame - so a busy hub
// costs the tab a bounded amount of work. Every value shown comes from the network, so
// text always goes in through textContent, never innerHTML.
"use strict";

(() => {
  const PROTOCOL = "netdumplings/1";
  const CLOSE_POLICY = 1008;      // the hub's "authentication failed"
  const STATUS_CHEF = "SystemStatusChef";
  const NOTICE_CHEF = "HubNoticeChef";
  const STREAM_ROWS = 500;        // rows in the live list
  const STREAM_KEEP = 2000;       // dumplings kept so a new filter has history to show
  const TABLE_ROWS = 200;         // rows kept per panel table
  const CHART_SAMPLES = 240;      // PacketCountChef samples kept for the chart
  const STREAM_BYTES = 32 << 20;  // ...and at most about this much of their JSON
  const MAX_KEYS = 1000;          // entries per keyed model (tags, connections, addresses):
                                  // names come from sniffed traffic, so an attacker can
                                  // make new ones forever; the least recently seen go first
  const MAX_NAMES = 300;          // chefs / kitchens offered in the filters
  const MAX_LAYERS = 40;          // PacketCountChef layers charted
  const RENDER_EVERY_MS = 150;    // at most ~7 DOM updates per second
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const DASH = "-";

  const $ = (id) => document.getElementById(id);

  // -- small helpers ---------------------------------------------------------------------

  const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const show = (v) => (v === null || v === undefined || v === "" ? DASH : String(v));

  function fmtTime(epoch) {
    if (num(epoch) === null) return DASH;
    const d = new Date(epoch * 1000);
    const p = (n, w = 2) => String(n).padStart(w, "0");
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }

  function fmtMs(seconds) {
    const s = num(seconds);
    if (s === null) return DASH;
    const ms = s * 1000;
    return ms >= 100 ? `${ms.toFixed(0)} ms` : ms >= 10 ? `${ms.toFixed(1)} ms` : `${ms.toFixed(2)} ms`;
  }

  function fmtBytes(n) {
    const v = num(n);
    if (v === null) return DASH;
    if (v < 1024) return `${v} B`;
    if (v < 1024 * 1024) return `${(v / 1024).toFixed(1)} KiB`;
    return `${(v / 1024 / 1024).toFixed(1)} MiB`;
  }

  function fmtRate(r) {
    const v = num(r);
    if (v === null) return DASH;
    return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  function fmtCount(n) {
    const v = num(n);
    return v === null ? DASH : v.toLocaleString("en-US");
  }

  function fmtDuration(seconds) {
    const s = num(seconds);
    if (s === null) return DASH;
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${sec}s`;
    return `${sec}s`;
  }

  function clip(text, n) {
    const s = String(text);
    return s.length > n ? s.slice(0, n - 1) + "…" : s;
  }

  function cell(text, cls, title) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    if (title) td.title = title;
    return td;
  }

  function row(cells, attrs) {
    const tr = document.createElement("tr");
    for (const c of cells) tr.appendChild(c);
    if (attrs) for (const [k, v] of Object.entries(attrs)) tr.dataset[k] = v;
    return tr;
  }

  // Replace a tbody's rows in one go (tables are small and rebuilt only when dirty).
  function fillBody(tbody, rows, emptyText, cols) {
    const frag = document.createDocumentFragment();
    for (const r of rows) frag.appendChild(r);
    if (!rows.length && emptyText) {
      const td = cell(emptyText, "empty");
      td.colSpan = cols;
      frag.appendChild(row([td]));
    }
    tbody.replaceChildren(frag);
  }

  // Map as a bounded LRU: (re)inserting moves a key to the end, the oldest go beyond max.
  function touch(map, key, value, max = MAX_KEYS) {
    map.delete(key);
    map.set(key, value);
    while (map.size > max) map.delete(map.keys().next().value);
    return value;
  }

  function countIn(map, key, max) {
    const n = (map.get(key) || 0) + 1;
    if (map.has(key)) map.set(key, n); else touch(map, key, n, max);
  }

  // Keep a capped array: newest first, oldest dropped.
  function pushCapped(list, item, cap) {
    list.unshift(item);
    if (list.length > cap) list.length = cap;
  }

  // -- configuration ---------------------------------------------------------------------

  const config = { hub: null, eater_name: "nd-web" };

  // An eater token (for a hub started with --eater-token) is never in config.json or a
  // query string (server logs, Referer): it comes from the token form or a "#token=..."
  // fragment (not sent to any server, removed from the address bar at once) and is kept in
  // sessionStorage for this tab, under the hub URL, so it only ever goes to that hub.
  let fragmentToken = null;
  {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      try { fragmentToken = decodeURIComponent(m[1]); } catch (_) { fragmentToken = null; }
      history.replaceState(null, "", location.pathname + location.search);
    }
  }
  const tokenKey = () => `netdumplings-token ${config.hub}`;
  function getToken() {
    try { return sessionStorage.getItem(tokenKey()) || null; } catch (_) { return null; }
  }
  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(tokenKey(), t); else sessionStorage.removeItem(tokenKey());
    } catch (_) { /* storage off: the token lasts until the page is closed */ }
    memoryToken = t || null;
  }
  let memoryToken = null;

  async function loadConfig() {
    try {
      const r = await fetch("config.json", { cache: "no-store" });
      if (r.ok) Object.assign(config, await r.json());
    } catch (_) { /* served by something without config.json: use the defaults below */ }
    const q = new URLSearchParams(location.search).get("hub");
    if (q && /^wss?:\/\//.test(q)) config.hub = q;
    if (!config.hub) config.hub = `ws://${location.hostname || "127.0.0.1"}:11348`;
  }

  // -- models: every dumpling is folded into these as it arrives -------------------------

  let seq = 0;
  const model = {
    received: 0,
    missed: 0,
    rateWindow: [],                 // [performance.now(), count] per received message
    stream: [],                     // newest last: {id, t, kitchen, chef, summary, d}
    streamBytes: 0,                 // JSON size of what stream holds (estimated per batch)
    chefs: new Map(),               // chef -> count
    kitchens: new Map(),            // kitchen -> count
    http: [], httpCount: 0, httpErrors: 0,
    dns: [], dnsCount: 0,
    fluentd: new Map(),             // tag -> stats
    zmtp: new Map(),                // kitchen|flow -> connection
    arp: new Map(),                 // ip -> entry
    arpAlerts: [], arpAlertKeys: new Map(),
    packets: { last: new Map(), samples: [], totals: new Map(), latest: new Map(), colors: new Map() },
    hub: { status: null, prev: null, rateIn: null, rateOut: null },
  };
  const dirty = new Set();

  // When a dumpling happened: the capture time of its packet for packet dumplings (right
  // for replayed files too), the kitchen's clock for interval dumplings (their capture
  // time is the last packet's, which stands still on a quiet wire).
  function timeOf(d) {
    const m = d.metadata;
    if (m.driver === "interval") return num(m.creation_time) ?? num(m.capture_time);
    return num(m.capture_time) ?? num(m.creation_time);
  }

  // One line for dumplings whose chef gives no "summary".
  function summarize(chef, p, fromHub) {
    if (!isObj(p)) return clip(JSON.stringify(p) ?? "", 200);
    if (typeof p.summary === "string") return p.summary;
    if (chef === STATUS_CHEF && fromHub) {
      return `hub: ${show(p.dumpling_kitchen_count)} kitchens, ${show(p.dumpling_eater_count)} eaters, ` +
        `${show(p.total_dumplings_in)} in, ${show(p.total_dumplings_out)} out, ${show(p.total_dumplings_dropped)} dropped`;
    }
    if (chef === NOTICE_CHEF && fromHub) return `hub: this page missed ${show(p.missed)} dumplings (queue ${show(p.queue_size)})`;
    if (isObj(p.packet_counts)) {
      return "packets: " + Object.entries(p.packet_counts).map(([k, v]) => `${k} ${v}`).join(" · ");
    }
    if (isObj(p.arp_table)) {
      const n = Object.keys(p.arp_table).length;
      const c = Array.isArray(p.changes) ? p.changes.length : 0;
      return `ARP table: ${n} addresses, ${c} MAC changes`;
    }
    if (isObj(p.lookups_seen)) return `DNS: ${Object.keys(p.lookups_seen).length} names looked up`;
    return clip(JSON.stringify(p), 200);
  }

  function ingest(d, size = 0) {
    if (!isObj(d) || !isObj(d.metadata)) return;
    const m = d.metadata;
    const chef = typeof m.chef === "string" ? m.chef : "?";
    const kitchen = m.kitchen === null || m.kitchen === undefined ? "hub" : String(m.kitchen);
    const p = d.payload;
    model.received++;
    countIn(model.chefs, chef, MAX_NAMES);
    countIn(model.kitchens, kitchen, MAX_NAMES);

    const item = { id: ++seq, t: timeOf(d), kitchen, chef, summary: "", d, hay: null, size };
    try {
      item.summary = clip(summarize(chef, p, m.kitchen == null), 400);
    } catch (_) {
      item.summary = "(payload not shown)";
    }
    model.stream.push(item);
    model.streamBytes += size;
    let drop = 0;
    while (model.stream.length - drop > STREAM_KEEP ||
           (model.streamBytes > STREAM_BYTES && model.stream.length - drop > 1)) {
      model.streamBytes -= model.stream[drop].size;
      drop++;
    }
    if (drop) model.stream.splice(0, drop);
    dirty.add("stream");

    try {
      route(chef, kitchen, p, d, m.kitchen == null);
    } catch (err) {
      // A chef with an unexpected payload must not stop the page.
      console.warn("netdumplings: could not use a dumpling from", chef, err);
    }
  }

  // The hub's own dumplings have no kitchen: a kitchen that names its chef like them is
  // not the hub and must not set the hub panel or the missed counter.
  function route(chef, kitchen, p, d, fromHub) {
    if (!isObj(p)) return;
    if (chef === STATUS_CHEF || chef === NOTICE_CHEF) {
      if (!fromHub) return;
    }
    if (chef === STATUS_CHEF) return onStatus(p, d);
    if (chef === NOTICE_CHEF) { model.missed += num(p.missed) || 0; dirty.add("header"); return; }
    if (isObj(p.packet_counts)) return onPacketCounts(kitchen, p.packet_counts, d.metadata);
    if (chef === "Http1Chef" || chef === "Http2Chef" || chef === "GrpcChef") return onHttp(chef, p, d);
    if (chef === "DNSLookupChef") return onDns(p, d);
    if (chef === "FluentdForwardChef") return onFluentd(p, d);
    if (chef === "ZmtpChef") return onZmtp(kitchen, p, d);
    if (chef === "ARPChef") return onArp(kitchen, p, d);
  }

  // Hub status: rates come from consecutive status dumplings' totals.
  function onStatus(p, d) {
    const h = model.hub;
    const t = num(d.metadata.creation_time);
    const cur = { t, in: num(p.total_dumplings_in), out: num(p.total_dumplings_out) };
    if (h.prev && t !== null && h.prev.t !== null && t > h.prev.t) {
      const dt = t - h.prev.t;
      if (cur.in !== null && h.prev.in !== null) h.rateIn = Math.max(0, cur.in - h.prev.in) / dt;
      if (cur.out !== null && h.prev.out !== null) h.rateOut = Math.max(0, cur.out - h.prev.out) / dt;
    }
    h.prev = cur;
    h.status = p;
    dirty.add("hub");
  }

  // PacketCountChef counts are cumulative per kitchen: rates are differences between a
  // kitchen's consecutive dumplings over the time between them. Which clock: a live
  // kitchen's interval dumplings are made on the wall clock (creation_time; its
  // capture_time stands still while the wire is quiet), a replayed file is read far
  // faster than real time and only its capture clock is right. A kitchen whose capture
  // time lags its wall clock by more than a minute at its first count is a replay.
  function onPacketCounts(kitchen, counts, meta) {
    const pk = model.packets;
    const prev = pk.last.get(kitchen);
    const created = num(meta.creation_time), captured = num(meta.capture_time);
    const replay = prev ? prev.replay
      : captured !== null && created !== null && Math.abs(created - captured) > 60;
    const t = replay ? captured : (created ?? captured);
    const clean = {};
    for (const [k, v] of Object.entries(counts)) if (num(v) !== null) clean[k] = v;
    touch(pk.last, kitchen, { t, counts: clean, replay }, MAX_NAMES);
    touch(pk.latest, kitchen, clean, MAX_NAMES);
    for (const k of Object.keys(clean)) {
      if (pk.colors.has(k)) continue;
      if (pk.colors.size >= MAX_LAYERS) delete clean[k];   // not charted or totalled
      else pk.colors.set(k, pk.colors.size);
    }
    if (prev && t !== null && prev.t !== null && t > prev.t) {
      const dt = t - prev.t;
      const rates = {};
      let reset = false;
      for (const [k, v] of Object.entries(clean)) if (v < (prev.counts[k] || 0)) reset = true;
      if (!reset) {
        for (const [k, v] of Object.entries(clean)) rates[k] = (v - (prev.counts[k] || 0)) / dt;
        pk.samples.push({ t, kitchen, rates });
        if (pk.samples.length > CHART_SAMPLES) pk.samples.shift();
      }
    }
    const totals = new Map();
    for (const c of pk.latest.values()) {
      for (const [k, v] of Object.entries(c)) totals.set(k, (totals.get(k) || 0) + v);
    }
    pk.totals = totals;
    dirty.add("packets");
  }

  function grpcStatus(p) {
    const code = num(p.grpc_status);
    if (code === null) return { text: DASH, cls: "" };
    const name = typeof p.grpc_status_name === "string" ? p.grpc_status_name : "";
    return { text: `${code} ${name}`.trim(), cls: code === 0 ? "ok" : "bad" };
  }

  function httpStatusClass(s) {
    const v = Number(s);
    if (!Number.isFinite(v)) return "";
    return v >= 500 ? "bad" : v >= 400 ? "warn" : v >= 300 ? "info" : v >= 100 ? "ok" : "";
  }

  function onHttp(chef, p, d) {
    let tx;
    if (chef === "GrpcChef") {
      const st = grpcStatus(p);
      tx = {
        proto: "gRPC", method: p.method ?? DASH, path: p.path ?? p.service ?? DASH,
        status: st.text, statusCls: st.cls, latency: p.latency,
        size: num(p.response_bytes), error: st.cls === "bad",
      };
    } else {
      if (p.method === undefined && p.status === undefined) return;  // not a transaction
      const status = p.status === undefined || p.status === null ? DASH
        : `${p.status}${p.reason ? " " + p.reason : ""}`;
      tx = {
        proto: chef === "Http2Chef" ? "HTTP/2" : (p.version || "HTTP/1"),
        method: p.method ?? DASH, path: p.path ?? DASH, status, statusCls: httpStatusClass(p.status),
        latency: p.latency, size: num(p.response_body_length), error: Number(p.status) >= 400,
      };
      if (p.outcome && p.outcome !== "complete" && tx.status === DASH) tx.status = String(p.outcome);
    }
    tx.t = num(p.timestamp) ?? timeOf(d);
    tx.server = isObj(p.flow) ? p.flow.server : p.dst;
    tx.d = d;
    model.httpCount++;
    if (tx.error) model.httpErrors++;
    pushCapped(model.http, tx, TABLE_ROWS);
    dirty.add("http");
  }

  function onDns(p, d) {
    if (p.name === undefined && p.event !== "lookup") return;  // the interval summary
    const answers = Array.isArray(p.answers)
      ? p.answers.map((a) => (isObj(a) ? (a.type && a.type !== p.type ? `${a.type} ${a.data}` : a.data) : a)).join(", ")
      : "";
    pushCapped(model.dns, {
      t: num(p.timestamp) ?? timeOf(d), name: p.name, type: p.type, rcode: p.rcode,
      answers, latency: p.latency, d,
    }, TABLE_ROWS);
    model.dnsCount++;
    dirty.add("dns");
  }

  function onFluentd(p, d) {
    if (typeof p.tag !== "string") return;
    const s = touch(model.fluentd, p.tag, model.fluentd.get(p.tag) ||
      { tag: p.tag, messages: 0, events: 0, modes: new Set(), last: null, t: null });
    s.messages++;
    const n = num(p.event_count) ?? (Array.isArray(p.events) ? p.events.length : 0);
    s.events += n;
    if ((p.mode || p.kind) && s.modes.size < 8) s.modes.add(clip(String(p.mode || p.kind), 40));
    if (Array.isArray(p.events) && p.events.length) {
      const last = p.events[p.events.length - 1];
      s.last = isObj(last) && "record" in last ? last.record : last;
    }
    s.t = num(p.timestamp) ?? timeOf(d);
    dirty.add("fluentd");
  }

  function onZmtp(kitchen, p, d) {
    const flow = isObj(p.flow) ? p.flow : null;
    const key = `${kitchen}|${flow ? `${flow.id}|${flow.client}|${flow.server}` : `${p.src}|${p.dst}`}`;
    const c = touch(model.zmtp, key, model.zmtp.get(key) || {
        client: flow ? flow.client : p.src, server: flow ? flow.server : p.dst,
        clientSocket: null, serverSocket: null, mechanism: null, version: null,
        c2s: 0, s2c: 0, first: null, last: null, state: "open",
    });
    const c2s = p.direction !== "server_to_client";
    const t = num(p.timestamp) ?? timeOf(d);
    if (p.type === "greeting") {
      c.mechanism = p.mechanism ?? c.mechanism;
      if (Array.isArray(p.version)) c.version = p.version.join(".");
    } else if (p.type === "command" && isObj(p.properties) && p.properties["Socket-Type"]) {
      if (c2s) c.clientSocket = p.properties["Socket-Type"]; else c.serverSocket = p.properties["Socket-Type"];
    } else if (p.type === "message") {
      if (c2s) c.c2s++; else c.s2c++;
      if (c.first === null) c.first = t;
      c.last = t;
    } else if (p.type === "close") {
      c.state = `closed (${show(p.reason)})`;
      c.clientSocket = p.client_socket ?? c.clientSocket;
      c.serverSocket = p.server_socket ?? c.serverSocket;
    } else if (p.type === "error") {
      c.state = "error";
    }
    dirty.add("zmtp");
  }

  function arpAlert(change, kitchen) {
    if (!isObj(change)) return;
    const key = `${kitchen}|${change.ip}|${change.old_mac}|${change.new_mac}|${change.timestamp}`;
    if (model.arpAlertKeys.has(key)) return;
    touch(model.arpAlertKeys, key, true);
    pushCapped(model.arpAlerts, { ...change, kitchen }, 20);
  }

  function onArp(kitchen, p, d) {
    if (isObj(p.arp_table)) {
      // The chef's own table is the authority: take it over for these addresses.
      for (const [ip, e] of Object.entries(p.arp_table)) {
        if (!isObj(e)) continue;
        touch(model.arp, ip, {
          ip, mac: e.mac, count: num(e.count) ?? 0, last: num(e.last_seen),
          changes: num(e.changes) ?? 0,
          previous: Array.isArray(e.previous_macs) ? e.previous_macs.slice(-8).map(String) : [],
        });
      }
      if (Array.isArray(p.changes)) for (const c of p.changes) arpAlert(c, kitchen);
      dirty.add("arp");
      return;
    }
    const ip = p.sender_ip, mac = p.sender_mac;
    if (typeof ip === "string" && ip !== "0.0.0.0" && typeof mac === "string") {
      const e = model.arp.get(ip) || { ip, mac, count: 0, last: null, changes: 0, previous: [] };
      if (e.mac !== mac) {
        e.previous = [...e.previous.filter((x) => x !== e.mac), e.mac].slice(-8);
        e.changes++;
        e.mac = mac;
      }
      e.count++;
      e.last = num(p.timestamp) ?? timeOf(d);
      touch(model.arp, ip, e);
    }
    if (p.mac_change) arpAlert(p.mac_change, kitchen);
    dirty.add("arp");
  }

  // -- rendering ---------------------------------------------------------------------------

  let renderPending = false;
  let lastRender = 0;

  // Coalesce: many messages -> one render, no more often than RENDER_EVERY_MS. A hidden
  // tab gets no animation frames, so fall back to a timer there (models stay current).
  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    const wait = Math.max(0, RENDER_EVERY_MS - (performance.now() - lastRender));
    setTimeout(() => {
      if (document.hidden) render();
      else requestAnimationFrame(render);
    }, wait);
  }

  function render() {
    renderPending = false;
    lastRender = performance.now();
    const todo = new Set(dirty);
    dirty.clear();
    // Each panel on its own: one that chokes on an odd payload must not leave the others
    // (whose dirty marks are already cleared) stale.
    const panels = [
      ["header", () => renderHeader()],
      ["stream", () => (todo.has("stream") || todo.has("filters")) && renderStream(todo.has("filters"))],
      ["packets", () => todo.has("packets") && renderPackets()],
      ["hub", () => todo.has("hub") && renderHub()],
      ["http", () => todo.has("http") && renderHttp()],
      ["dns", () => todo.has("dns") && renderDns()],
      ["fluentd", () => todo.has("fluentd") && renderFluentd()],
      ["zmtp", () => todo.has("zmtp") && renderZmtp()],
      ["arp", () => todo.has("arp") && renderArp()],
    ];
    for (const [name, draw] of panels) {
      try {
        draw();
      } catch (err) {
        console.warn("netdumplings: could not draw the", name, "panel", err);
      }
    }
  }

  function renderHeader() {
    $("count-total").textContent = fmtCount(model.received);
    const now = performance.now();
    const w = model.rateWindow;
    while (w.length && now - w[0][0] > 5000) w.shift();
    const n = w.reduce((a, x) => a + x[1], 0);
    const span = w.length ? Math.max(1000, now - w[0][0]) / 1000 : 1;
    $("rate-total").textContent = fmtRate(n / span);
    $("missed-wrap").hidden = model.missed === 0;
    $("missed-total").textContent = fmtCount(model.missed);
  }

  // Live list -----------------------------------------------------------------------------

  const ui = { paused: false, pausedAt: 0, shownUpTo: 0, filters: { chef: "", kitchen: "", text: "" } };
  const rowItem = new WeakMap();  // <tr> -> stream item, for the JSON view

  function matches(item) {
    const f = ui.filters;
    if (f.chef && item.chef !== f.chef) return false;
    if (f.kitchen && item.kitchen !== f.kitchen) return false;
    if (f.text) {
      if (item.hay === null) {
        let json = "";
        try { json = JSON.stringify(item.d.payload) ?? ""; } catch (_) { /* cyclic: impossible from JSON */ }
        item.hay = `${item.chef}\n${item.kitchen}\n${item.summary}\n${json.slice(0, 20000)}`.toLowerCase();
      }
      if (!item.hay.includes(f.text)) return false;
    }
    return true;
  }

  function streamRow(item) {
    const tr = row([
      cell(fmtTime(item.t), "time"),
      cell(item.kitchen, "kitchen"),
      cell(item.chef, `chef chef-${colorIndex(item.chef)}`),
      cell(item.summary, "summary", item.summary),
    ], { id: String(item.id), chef: item.chef, kitchen: item.kitchen });
    rowItem.set(tr, item);
    return tr;
  }

  const chefColors = new Map();
  function colorIndex(name) {
    if (!chefColors.has(name)) touch(chefColors, name, chefColors.size % 8, MAX_NAMES);
    return chefColors.get(name);
  }

  function renderStream(full) {
    syncSelect($("filter-chef"), model.chefs, ui.filters.chef, "all chefs");
    syncSelect($("filter-kitchen"), model.kitchens, ui.filters.kitchen, "all kitchens");
    const tbody = $("stream-table").tBodies[0];
    const newest = model.stream.length ? model.stream[model.stream.length - 1].id : 0;
    if (ui.paused) {
      const waiting = model.stream.filter((it) => it.id > ui.pausedAt && matches(it)).length;
      const badge = $("paused-badge");
      badge.hidden = false;
      badge.textContent = `paused · ${waiting} new`;
      badge.dataset.waiting = String(waiting);
      return;
    }
    if (full) {
      // Newest first, at most STREAM_ROWS that pass the filters.
      const rows = [];
      for (let i = model.stream.length - 1; i >= 0 && rows.length < STREAM_ROWS; i--) {
        if (matches(model.stream[i])) rows.push(streamRow(model.stream[i]));
      }
      fillBody(tbody, rows, "no dumplings match", 4);
    } else {
      // Only what arrived since the last render, on top; trim the bottom.
      const fresh = [];
      for (let i = model.stream.length - 1; i >= 0; i--) {
        const it = model.stream[i];
        if (it.id <= ui.shownUpTo) break;
        if (matches(it)) fresh.push(streamRow(it));
        if (fresh.length >= STREAM_ROWS) break;
      }
      if (fresh.length) {
        const empty = tbody.querySelector("td.empty");
        if (empty) empty.parentElement.remove();
        const frag = document.createDocumentFragment();
        for (const tr of fresh) frag.appendChild(tr);
        tbody.insertBefore(frag, tbody.firstChild);
        while (tbody.rows.length > STREAM_ROWS) tbody.deleteRow(-1);
      }
    }
    ui.shownUpTo = newest;
    $("stream-note").textContent = `${fmtCount(tbody.querySelectorAll("tr[data-id]").length)} shown · ` +
      `${fmtCount(model.chefs.size)} chefs · ${fmtCount(model.kitchens.size)} kitchens`;
  }

  // Options follow what has been seen; the current choice stays even if it vanished.
  function syncSelect(sel, counts, current, allLabel) {
    const names = [...counts.keys()].sort();
    if (current && !counts.has(current)) names.push(current);
    const want = ["", ...names];
    const have = [...sel.options].map((o) => o.value);
    const same = want.length === have.length && want.every((v, i) => v === have[i]);
    if (same) {
      for (const o of sel.options) if (o.value) o.textContent = `${o.value} (${fmtCount(counts.get(o.value) || 0)})`;
      return;
    }
    const frag = document.createDocumentFragment();
    for (const v of want) {
      const o = document.createElement("option");
      o.value = v;
      o.textContent = v ? `${v} (${fmtCount(counts.get(v) || 0)})` : allLabel;
      frag.appendChild(o);
    }
    sel.replaceChildren(frag);
    sel.value = current;
  }

  // Packets chart -------------------------------------------------------------------------

  const PALETTE = ["#4f9dff", "#ffb347", "#5fd38d", "#ff6b81", "#b98cff", "#4dd8d0", "#f5e663",
    "#ff8f5e", "#9aa7b8", "#e67ecb"];
  const colorOf = (layer) => PALETTE[(model.packets.colors.get(layer) ?? 0) % PALETTE.length];

  // Samples from several kitchens: summed per whole capture-time second.
  function chartSeries() {
    const buckets = new Map();
    for (const s of model.packets.samples) {
      const b = Math.round(s.t * 4) / 4;  // quarter seconds: keeps fast poke intervals apart
      const acc = buckets.get(b) || {};
      for (const [k, v] of Object.entries(s.rates)) acc[k] = (acc[k] || 0) + v;
      buckets.set(b, acc);
    }
    return [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const e = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * e) return m * e;
    return 10 * e;
  }

  const hiddenLayers = new Set();  // layers switched off in the legend

  function renderPackets() {
    const canvas = $("packets-chart");
    const pk = model.packets;
    const series = chartSeries();
    canvas.dataset.samples = String(series.length);
    const latest = series.length ? series[series.length - 1][1] : {};
    const layers = [...pk.colors.keys()];

    // Legend: colour, layer, current rate, total since each kitchen started.
    const items = layers.map((layer) => {
      const li = document.createElement("li");
      li.dataset.layer = layer;
      li.dataset.total = String(pk.totals.get(layer) || 0);
      li.dataset.rate = latest[layer] === undefined ? "" : String(latest[layer]);
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = colorOf(layer);
      const name = document.createElement("b");
      name.textContent = layer;
      const vals = document.createElement("span");
      vals.className = "vals";
      vals.textContent = `${latest[layer] === undefined ? DASH : fmtRate(latest[layer])}/s · ${fmtCount(pk.totals.get(layer) || 0)} total`;
      li.append(sw, name, vals);
      li.classList.toggle("off", hiddenLayers.has(layer));
      li.title = "click to show or hide this layer in the chart";
      return li;
    });
    $("packets-legend").replaceChildren(...items);
    const replays = [...pk.last.values()].filter((k) => k.replay).length;
    $("packets-note").textContent = pk.latest.size
      ? `${pk.latest.size} kitchen${pk.latest.size > 1 ? "s" : ""}` +
        (replays ? ` · ${replays} replaying (capture clock)` : "") : "";
    drawChart(canvas, series, layers);
  }

  function drawChart(canvas, series, layers) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600, h = canvas.clientHeight || 220;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.body);
    const grid = css.getPropertyValue("--grid").trim() || "#333";
    const muted = css.getPropertyValue("--muted").trim() || "#888";
    const pad = { l: 52, r: 12, t: 10, b: 24 };
    const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = muted;
    if (series.length < 1) {
      g.textAlign = "center";
      g.fillText("waiting for two PacketCountChef dumplings from one kitchen…", w / 2, h / 2);
      return;
    }
    const t1 = series[series.length - 1][0];
    const t0 = Math.min(series[0][0], t1 - 10);
    let vmax = 0;
    for (const [, r] of series) for (const v of Object.values(r)) vmax = Math.max(vmax, v);
    vmax = niceMax(vmax * 1.1);
    const x = (t) => pad.l + ((t - t0) / (t1 - t0 || 1)) * pw;
    const y = (v) => pad.t + ph - (v / vmax) * ph;

    g.strokeStyle = grid;
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const v = (vmax * i) / 4, yy = Math.round(y(v)) + 0.5;
      g.beginPath(); g.moveTo(pad.l, yy); g.lineTo(w - pad.r, yy); g.stroke();
      g.fillText(fmtRate(v), pad.l - 6, yy);
    }
    g.textAlign = "center";
    g.textBaseline = "top";
    for (let i = 0; i <= 4; i++) {
      const t = t0 + ((t1 - t0) * i) / 4;
      g.textAlign = i === 0 ? "left" : i === 4 ? "right" : "center";  // stay inside the canvas
      g.fillText(i === 4 ? "latest" : `-${(t1 - t).toFixed(t1 - t0 < 20 ? 1 : 0)}s`, x(t), h - pad.b + 6);
    }
    g.lineWidth = 2;
    g.lineJoin = "round";
    // Only layers some sample has (a replayed kitchen's single count has no rate), minus
    // the ones hidden from the legend. The first (usually Ethernet: every packet) is drawn
    // as a faint area, so lines of layers with the same counts do not hide it.
    const shown = layers.filter((l) => !hiddenLayers.has(l) && series.some(([, r]) => l in r));
    if (shown.length && series.length > 1) {
      const base = shown[0];
      g.beginPath();
      g.moveTo(x(series[0][0]), y(0));
      for (const [t, r] of series) g.lineTo(x(t), y(r[base] || 0));
      g.lineTo(x(series[series.length - 1][0]), y(0));
      g.closePath();
      g.globalAlpha = 0.18;
      g.fillStyle = colorOf(base);
      g.fill();
      g.globalAlpha = 1;
    }
    // Widest first: layers with equal rates (IP and UDP on a UDP-only wire) show as
    // nested stripes instead of one line hiding the others.
    shown.forEach((layer, i) => {
      g.lineWidth = 2 + (shown.length - 1 - i) * 1.5;
      g.strokeStyle = colorOf(layer);
      g.fillStyle = colorOf(layer);
      g.beginPath();
      let started = false;
      for (const [t, r] of series) {
        const v = r[layer] || 0;
        if (!started) { g.moveTo(x(t), y(v)); started = true; } else g.lineTo(x(t), y(v));
      }
      g.stroke();
      if (series.length === 1) {  // one sample: a dot, since a line needs two
        g.beginPath(); g.arc(x(series[0][0]), y(series[0][1][layer] || 0), 3, 0, 2 * Math.PI); g.fill();
      }
    });
  }

  // Hub status ------------------------------------------------------------------------------

  function renderHub() {
    const h = model.hub, p = h.status;
    if (!p) return;
    $("hub-version").textContent = p.hub_version ? `v${p.hub_version}` : "";
    const stats = [
      ["uptime", fmtDuration(p.server_uptime), "uptime"],
      ["kitchens", show(p.dumpling_kitchen_count), "kitchens"],
      ["eaters", show(p.dumpling_eater_count), "eaters"],
      ["in", fmtCount(p.total_dumplings_in), "in"],
      ["out", fmtCount(p.total_dumplings_out), "out"],
      ["in/s", fmtRate(h.rateIn), "rate-in"],
      ["out/s", fmtRate(h.rateOut), "rate-out"],
      ["dropped", fmtCount(p.total_dumplings_dropped ?? 0), "dropped"],
      ["invalid", fmtCount(p.total_dumplings_invalid ?? 0), "invalid"],
    ];
    const frag = document.createDocumentFragment();
    for (const [label, value, key] of stats) {
      const div = document.createElement("div");
      div.dataset.stat = key;
      const dt = document.createElement("dt"); dt.textContent = label;
      const dd = document.createElement("dd"); dd.textContent = value;
      if (key === "dropped" && num(p.total_dumplings_dropped) > 0) dd.className = "bad";
      div.append(dt, dd);
      frag.appendChild(div);
    }
    $("hub-stats").replaceChildren(frag);

    const kitchens = (Array.isArray(p.dumpling_kitchens) ? p.dumpling_kitchens : []).filter(isObj).slice(0, TABLE_ROWS).map((k) => {
      const info = isObj(k.info_from_kitchen) ? k.info_from_kitchen : {};
      const hub = isObj(k.info_from_hub) ? k.info_from_hub : {};
      const name = info.kitchen_name ?? k.kitchen_name ?? DASH;
      const chefs = Array.isArray(info.chefs) ? info.chefs.join(", ") : show(info.chefs);
      return row([
        cell(show(name)), cell(show(info.host ?? hub.host)), cell(clip(chefs, 60), "muted", chefs),
        cell(fmtCount(k.dumplings), "num"), cell(fmtCount(k.invalid), num(k.invalid) > 0 ? "num bad" : "num"),
      ], { kitchen: String(name) });
    });
    fillBody($("hub-kitchens").tBodies[0], kitchens, "no kitchens connected", 5);

    const eaters = (Array.isArray(p.dumpling_eaters) ? p.dumpling_eaters : []).filter(isObj).slice(0, TABLE_ROWS).map((e) => {
      const info = isObj(e.info_from_eater) ? e.info_from_eater : {};
      const hub = isObj(e.info_from_hub) ? e.info_from_hub : {};
      const name = info.eater_name ?? DASH;
      const q = num(e.queue_depth) === null ? DASH : `${e.queue_depth}/${show(e.queue_size)}`;
      return row([
        cell(show(name)), cell(show(hub.host)), cell(fmtCount(e.sent), "num"), cell(q, "num"),
        cell(fmtCount(e.dropped ?? 0), num(e.dropped) > 0 ? "num bad" : "num"),
      ], { eater: String(name) });
    });
    fillBody($("hub-eaters").tBodies[0], eaters, "no eaters", 5);
  }

  // Protocol tables -------------------------------------------------------------------------

  function renderHttp() {
    const rows = model.http.map((tx) => row([
      cell(fmtTime(tx.t), "time"), cell(show(tx.proto), "muted"), cell(show(tx.method), "method"),
      cell(clip(show(tx.path), 80), "path", show(tx.path)), cell(tx.status, `status ${tx.statusCls}`),
      cell(fmtMs(tx.latency), "num latency"), cell(fmtBytes(tx.size), "num"), cell(show(tx.server), "muted"),
    ], { proto: tx.proto }));
    fillBody($("http-table").tBodies[0], rows, "no HTTP or gRPC transactions yet", 8);
    $("http-note").textContent = model.httpCount
      ? `${fmtCount(model.httpCount)} seen · ${fmtCount(model.httpErrors)} errors` : "";
  }

  function renderDns() {
    const rows = model.dns.map((q) => row([
      cell(fmtTime(q.t), "time"), cell(show(q.name), "name"), cell(show(q.type)),
      cell(show(q.rcode), q.rcode === "NOERROR" ? "ok" : q.rcode ? "warn" : ""),
      cell(clip(show(q.answers), 60), "answers", show(q.answers)), cell(fmtMs(q.latency), "num"),
    ], { name: String(q.name) }));
    fillBody($("dns-table").tBodies[0], rows, "no DNS lookups yet", 6);
    $("dns-note").textContent = model.dnsCount ? `${fmtCount(model.dnsCount)} lookups` : "";
  }

  function renderFluentd() {
    const tags = [...model.fluentd.values()].sort((a, b) => b.events - a.events).slice(0, TABLE_ROWS);
    const rows = tags.map((s) => {
      let rec = DASH;
      try { rec = s.last === null ? DASH : JSON.stringify(s.last); } catch (_) { /* keep dash */ }
      return row([
        cell(s.tag, "tag"), cell(fmtCount(s.messages), "num messages"), cell(fmtCount(s.events), "num events"),
        cell([...s.modes].join(", "), "muted"), cell(clip(rec, 90), "record", clip(rec, 2000)),
      ], { tag: s.tag });
    });
    fillBody($("fluentd-table").tBodies[0], rows, "no Fluentd messages yet", 5);
    $("fluentd-note").textContent = model.fluentd.size ? `${model.fluentd.size} tags` : "";
  }

  function renderZmtp() {
    const conns = [...model.zmtp.values()].slice(-TABLE_ROWS).reverse();
    const rows = conns.map((c) => {
      const n = c.c2s + c.s2c;
      const span = c.first !== null && c.last !== null ? c.last - c.first : 0;
      const rate = n > 1 && span > 0 ? (n - 1) / span : null;
      return row([
        cell(`${show(c.client)} → ${show(c.server)}`, "flow"),
        cell(`${show(c.clientSocket)} → ${show(c.serverSocket)}`, "sockets"),
        cell(c.mechanism ? `${c.mechanism}${c.version ? " " + c.version : ""}` : DASH, "muted"),
        cell(fmtCount(c.c2s), "num c2s"), cell(fmtCount(c.s2c), "num s2c"), cell(fmtRate(rate), "num"),
        cell(c.state, c.state === "open" ? "ok" : c.state === "error" ? "bad" : "muted"),
      ], { client: String(c.client), server: String(c.server) });
    });
    fillBody($("zmtp-table").tBodies[0], rows, "no ZMTP connections yet", 7);
    $("zmtp-note").textContent = model.zmtp.size ? `${model.zmtp.size} connections` : "";
  }

  function renderArp() {
    const entries = [...model.arp.values()].sort((a, b) => (b.changes - a.changes) || a.ip.localeCompare(b.ip, "en", { numeric: true }));
    const rows = entries.slice(0, TABLE_ROWS).map((e) => row([
      cell(e.ip, "ip"), cell(show(e.mac), "mac"), cell(fmtCount(e.count), "num"),
      cell(fmtTime(e.last), "time"),
      cell(e.changes ? `${e.changes} (was ${e.previous.join(", ")})` : "none", e.changes ? "bad" : "muted"),
    ], { ip: e.ip, changed: e.changes ? "yes" : "no" }));
    fillBody($("arp-table").tBodies[0], rows, "no ARP traffic yet", 5);
    const alerts = model.arpAlerts.map((a) => {
      const li = document.createElement("li");
      li.dataset.ip = String(a.ip);
      li.textContent = `${fmtTime(a.timestamp)}  ${show(a.ip)} moved from ${show(a.old_mac)} to ` +
        `${show(a.new_mac)} - possible ARP spoofing (kitchen ${a.kitchen})`;
      return li;
    });
    $("arp-alerts").replaceChildren(...alerts);
    $("arp-note").textContent = model.arp.size
      ? `${model.arp.size} addresses · ${model.arpAlerts.length} alerts` : "";
  }

  // -- JSON view ---------------------------------------------------------------------------

  // Pretty JSON with token classes, built from text nodes (the payload is untrusted).
  function highlightJson(pre, value) {
    const text = JSON.stringify(value, null, 2) ?? "null";
    const re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
    const frag = document.createDocumentFragment();
    let at = 0;
    for (const m of text.matchAll(re)) {
      if (m.index > at) frag.appendChild(document.createTextNode(text.slice(at, m.index)));
      const span = document.createElement("span");
      span.className = m[1] ? (m[2] ? "k" : "s") : m[3] ? "l" : "n";
      span.textContent = m[1] ? m[1] : m[0];
      frag.appendChild(span);
      if (m[2]) frag.appendChild(document.createTextNode(m[2]));
      at = m.index + m[0].length;
    }
    frag.appendChild(document.createTextNode(text.slice(at)));
    pre.replaceChildren(frag);
    return text;
  }

  let dialogText = "";
  function openJson(item) {
    $("json-title").textContent = `${item.chef} · ${item.kitchen} · ${fmtTime(item.t)}`;
    dialogText = highlightJson($("json-view"), item.d);
    const dlg = $("json-dialog");
    if (!dlg.open) dlg.showModal();
  }

  // -- connection ----------------------------------------------------------------------------

  const conn = { ws: null, attempt: 0, timer: null, connects: 0 };

  function setConn(state, text) {
    const el = $("conn");
    el.dataset.state = state;
    el.dataset.connects = String(conn.connects);
    $("conn-text").textContent = text;
  }

  function connect() {
    clearTimeout(conn.timer);
    setConn("connecting", `connecting${conn.attempt ? ` (attempt ${conn.attempt + 1})` : ""}…`);
    let ws;
    try {
      ws = new WebSocket(config.hub);
    } catch (err) {
      setConn("error", `bad hub URL: ${err.message}`);
      return;
    }
    conn.ws = ws;
    let welcomed = false;
    const token = getToken() ?? memoryToken;
    ws.onopen = () => {
      const hello = { eater_name: config.eater_name || "nd-web", protocol: PROTOCOL, batch: true };
      if (token) hello.token = token;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") return;  // we asked for JSON; ignore anything else
      let obj;
      try { obj = JSON.parse(ev.data); } catch (_) { return; }
      if (!welcomed) {
        // The first message proves the hub took the hello; a 0.5 hub sends no welcome.
        welcomed = true;
        conn.attempt = 0;
        conn.connects++;
        setConn("connected", "connected");
        if (isObj(obj) && obj.welcome === "netdumplings") {
          if (obj.hub_version) $("conn-text").textContent = `connected · hub ${obj.hub_version}`;
          return;
        }
      }
      let n = 0;
      if (Array.isArray(obj)) {
        const each = obj.length ? ev.data.length / obj.length : 0;
        for (const d of obj) { ingest(d, each); n++; }
      } else { ingest(obj, ev.data.length); n = 1; }
      model.rateWindow.push([performance.now(), n]);
      if (model.rateWindow.length > 5000) model.rateWindow.splice(0, 1000);
      scheduleRender();
    };
    ws.onclose = (ev) => {
      if (conn.ws !== ws) return;
      conn.ws = null;
      if (ev.code === CLOSE_POLICY && !welcomed) {
        // The hub wants an eater token (or another one): ask, instead of knocking forever.
        if (token) setToken(null);
        setConn("error", token ? "the hub refused the eater token" : "the hub needs an eater token");
        $("token-form").hidden = false;
        $("token-input").focus();
        return;
      }
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** conn.attempt) * (0.8 + Math.random() * 0.4);
      conn.attempt++;
      const why = ev.reason ? `: ${ev.reason}` : ev.code && ev.code !== 1006 ? ` (code ${ev.code})` : "";
      setConn("disconnected", `disconnected${why} · retrying in ${(delay / 1000).toFixed(1)}s`);
      conn.timer = setTimeout(connect, delay);
    };
    ws.onerror = () => { /* onclose follows and schedules the retry */ };
  }

  // -- wiring --------------------------------------------------------------------------------

  function setPaused(p) {
    ui.paused = p;
    const btn = $("pause");
    btn.textContent = p ? "Resume" : "Pause";
    btn.setAttribute("aria-pressed", String(p));
    document.body.classList.toggle("paused", p);
    if (p) {
      ui.pausedAt = model.stream.length ? model.stream[model.stream.length - 1].id : 0;
      dirty.add("stream");
    } else {
      $("paused-badge").hidden = true;
      dirty.add("filters");
    }
    scheduleRender();
  }

  function wire() {
    $("pause").addEventListener("click", () => setPaused(!ui.paused));
    $("clear").addEventListener("click", () => {
      model.stream.length = 0;
      model.streamBytes = 0;
      ui.pausedAt = 0;
      dirty.add("filters");
      scheduleRender();
    });
    const refilter = () => {
      ui.filters.chef = $("filter-chef").value;
      ui.filters.kitchen = $("filter-kitchen").value;
      ui.filters.text = $("filter-text").value.trim().toLowerCase();
      dirty.add("filters");
      scheduleRender();
    };
    $("filter-chef").addEventListener("change", refilter);
    $("filter-kitchen").addEventListener("change", refilter);
    $("filter-text").addEventListener("input", refilter);
    $("stream-table").tBodies[0].addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr");
      const item = tr && rowItem.get(tr);
      if (item) openJson(item);
    });
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("token-input").value.trim();
      $("token-input").value = "";
      if (!t) return;
      setToken(t);
      $("token-form").hidden = true;
      conn.attempt = 0;
      connect();
    });
    $("json-close").addEventListener("click", () => $("json-dialog").close());
    $("json-dialog").addEventListener("click", (ev) => {
      if (ev.target === $("json-dialog")) $("json-dialog").close();  // click on the backdrop
    });
    $("json-copy").addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(dialogText); $("json-copy").textContent = "Copied"; } catch (_) {
        $("json-copy").textContent = "Copy failed";
      }
      setTimeout(() => { $("json-copy").textContent = "Copy"; }, 1500);
    });
    $("packets-legend").addEventListener("click", (ev) => {
      const li = ev.target.closest("li[data-layer]");
      if (!li) return;
      const layer = li.dataset.layer;
      if (hiddenLayers.has(layer)) hiddenLayers.delete(layer); else hiddenLayers.add(layer);
      dirty.add("packets");
      scheduleRender();
    });
    window.addEventListener("resize", () => { dirty.add("packets"); scheduleRender(); });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) { for (const k of ["packets", "hub", "http", "dns", "fluentd", "zmtp", "arp"]) dirty.add(k); scheduleRender(); }
    });
    setInterval(() => renderHeader(), 1000);  // keep the rate honest when nothing arrives
  }

  async function main() {
    wire();
    await loadConfig();
    $("hub-url").textContent = config.hub;
    if (fragmentToken) setToken(fragmentToken);
    for (const k of ["packets", "hub", "http", "dns", "fluentd", "zmtp", "arp", "filters"]) dirty.add(k);
    render();
    connect();
  }

  // For tests and curious people: read-only peeks at the models.
  window.netdumplings = {
    get received() { return model.received; },
    get connects() { return conn.connects; },
    get state() { return $("conn").dataset.state; },
    rates(layer) { return chartSeries().map(([, r]) => r[layer] || 0); },
    sizes() {
      return {
        stream: model.stream.length, chefs: model.chefs.size, kitchens: model.kitchens.size,
        fluentd: model.fluentd.size, zmtp: model.zmtp.size, arp: model.arp.size,
        arpAlertKeys: model.arpAlertKeys.size, layers: model.packets.colors.size,
        packetKitchens: model.packets.latest.size, chefColors: chefColors.size,
        rateWindow: model.rateWindow.length,
      };
    },
  };

  main();
})();
