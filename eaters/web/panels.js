// The per-protocol panels: each folds its chef's dumplings into a small model and
// draws it as a table when dirty. Rows carry the dumpling they came from, so every
// table opens the detail pane on click or Enter.

import { $, DASH, MAX_KEYS, isObj, num, show, fmtTime, fmtMs, fmtBytes, fmtRate, fmtCount, fmtDuration, clip, cell, row, fillBody, touch, pushCapped, timeCell, timeOf, openable } from "./util.js";

const TABLE_ROWS = 200;  // rows kept per panel table

/** The models live in ``model`` (app.js owns it); ``dirty`` collects panels to redraw. */
export function createPanels(model, dirty) {
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
    s.d = d;
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
    c.d = d;
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
          previous: Array.isArray(e.previous_macs) ? e.previous_macs.slice(-8).map(String) : [], d,
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
      e.d = d;
      touch(model.arp, ip, e);
    }
    if (p.mac_change) arpAlert(p.mac_change, kitchen);
    dirty.add("arp");
  }


  // EPICS Channel Access: one row per process variable (channel name), with the server
  // that answered, the commands seen, and search/response latency.
  function onCa(p, d) {
    const pv = typeof p.pv === "string" ? p.pv
      : isObj(p.fields) && typeof p.fields.name === "string" && /Search|CreateChan/.test(String(p.command)) ? p.fields.name : null;
    // Commands of the circuit or the search that name no channel share one row.
    const key = pv ?? "(no channel)";
    const e = touch(model.ca, key, model.ca.get(key) ||
      { pv: key, named: pv !== null, server: null, n: 0, commands: new Map(), latency: null, t: null, d: null });
    e.n++;
    const cmd = typeof p.command === "string" ? clip(p.command, 40) : "?";
    if (e.commands.has(cmd) || e.commands.size < 12) e.commands.set(cmd, (e.commands.get(cmd) || 0) + 1);
    if (typeof p.server_address === "string") e.server = p.server_address;
    else if (!e.server && isObj(p.flow) && typeof p.flow.server === "string") e.server = p.flow.server;
    if (num(p.latency) !== null) e.latency = p.latency;
    e.t = num(p.timestamp) ?? timeOf(d);
    e.d = d;
    model.caCount++;
    dirty.add("ca");
  }

  function renderCa() {
    const list = [...model.ca.values()].sort((a, b) => (b.named - a.named) || (b.n - a.n)).slice(0, TABLE_ROWS);
    const rows = list.map((e) => openable(row([
      cell(e.pv, e.named ? "pv" : "pv muted"), cell(show(e.server), "muted"), cell(fmtCount(e.n), "num"),
      cell([...e.commands].map(([c, n]) => `${c} ${n}`).join(", "), "muted commands"),
      cell(fmtMs(e.latency), "num"), timeCell(e.t),
    ], { pv: e.pv }), e.d));
    fillBody($("ca-table").tBodies[0], rows, "no Channel Access traffic yet", 6);
    $("ca-note").textContent = model.ca.size ? `${fmtCount(model.caCount)} messages · ${model.ca.size} channels` : "";
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
    const rows = model.http.map((tx) => openable(row([
      timeCell(tx.t), cell(show(tx.proto), "muted"), cell(show(tx.method), "method"),
      cell(clip(show(tx.path), 80), "path", show(tx.path)), cell(tx.status, `status ${tx.statusCls}`),
      cell(fmtMs(tx.latency), "num latency"), cell(fmtBytes(tx.size), "num"), cell(show(tx.server), "muted"),
    ], { proto: tx.proto }), tx.d));
    fillBody($("http-table").tBodies[0], rows, "no HTTP or gRPC transactions yet", 8);
    $("http-note").textContent = model.httpCount
      ? `${fmtCount(model.httpCount)} seen · ${fmtCount(model.httpErrors)} errors` : "";
  }

  function renderDns() {
    const rows = model.dns.map((q) => openable(row([
      timeCell(q.t), cell(show(q.name), "name"), cell(show(q.type)),
      cell(show(q.rcode), q.rcode === "NOERROR" ? "ok" : q.rcode ? "warn" : ""),
      cell(clip(show(q.answers), 60), "answers", show(q.answers)), cell(fmtMs(q.latency), "num"),
    ], { name: String(q.name) }), q.d));
    fillBody($("dns-table").tBodies[0], rows, "no DNS lookups yet", 6);
    $("dns-note").textContent = model.dnsCount ? `${fmtCount(model.dnsCount)} lookups` : "";
  }

  function renderFluentd() {
    const tags = [...model.fluentd.values()].sort((a, b) => b.events - a.events).slice(0, TABLE_ROWS);
    const rows = tags.map((s) => {
      let rec = DASH;
      try { rec = s.last === null ? DASH : JSON.stringify(s.last); } catch (_) { /* keep dash */ }
      return openable(row([
        cell(s.tag, "tag"), cell(fmtCount(s.messages), "num messages"), cell(fmtCount(s.events), "num events"),
        cell([...s.modes].join(", "), "muted"), cell(clip(rec, 90), "record", clip(rec, 2000)),
      ], { tag: s.tag }), s.d);
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
      return openable(row([
        cell(`${show(c.client)} → ${show(c.server)}`, "flow"),
        cell(`${show(c.clientSocket)} → ${show(c.serverSocket)}`, "sockets"),
        cell(c.mechanism ? `${c.mechanism}${c.version ? " " + c.version : ""}` : DASH, "muted"),
        cell(fmtCount(c.c2s), "num c2s"), cell(fmtCount(c.s2c), "num s2c"), cell(fmtRate(rate), "num"),
        cell(c.state, c.state === "open" ? "ok" : c.state === "error" ? "bad" : "muted"),
      ], { client: String(c.client), server: String(c.server) }), c.d);
    });
    fillBody($("zmtp-table").tBodies[0], rows, "no ZMTP connections yet", 7);
    $("zmtp-note").textContent = model.zmtp.size ? `${model.zmtp.size} connections` : "";
  }

  function renderArp() {
    const entries = [...model.arp.values()].sort((a, b) => (b.changes - a.changes) || a.ip.localeCompare(b.ip, "en", { numeric: true }));
    const rows = entries.slice(0, TABLE_ROWS).map((e) => openable(row([
      cell(e.ip, "ip"), cell(show(e.mac), "mac"), cell(fmtCount(e.count), "num"),
      timeCell(e.last),
      cell(e.changes ? `${e.changes} (was ${e.previous.join(", ")})` : "none", e.changes ? "bad" : "muted"),
    ], { ip: e.ip, changed: e.changes ? "yes" : "no" }), e.d));
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

  return { onHttp, onDns, onFluentd, onZmtp, onArp, onCa, renderCa, renderHub, renderHttp, renderDns, renderFluentd, renderZmtp, renderArp };
}
