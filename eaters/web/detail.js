// The detail pane beside the live list: one dumpling as a decoded tree, its request and
// response side by side, the other dumplings of its flow, and its raw JSON.
//
// A pane rather than a modal so an analyst can keep reading while walking the list with
// the keyboard. Everything is built from text nodes: payloads are untrusted.

import { $, DASH, isObj, num, clip, fmtDateTime, fmtMs, fmtBytes, chefColor } from "./util.js";

const REQUEST_KEYS = new Set(["method", "path", "host", "authority", "scheme", "version", "service",
  "call_type", "user_agent", "timeout", "query", "custom_metadata"]);
const RESPONSE_KEYS = new Set(["status", "reason", "grpc_status", "grpc_status_name", "grpc_message",
  "http_status", "response", "trailers_only", "informational_headers"]);
const BODY_CLIP = 4000;

// Epoch seconds between 2001 and 2286 in a field named like a time: shown as a date.
const isTimeKey = (k) => /(^|_)(time|timestamp)$|_at$/.test(k);
const isEpoch = (v) => typeof v === "number" && v > 1e9 && v < 1e10;

/** Which flow a dumpling belongs to: its chef's flow id where it has one, else the pair
 *  of endpoints in either direction. null when it names none. */
export function flowKey(item) {
  const p = item.d && item.d.payload;
  if (!isObj(p)) return null;
  const f = isObj(p.flow) ? p.flow : null;
  if (f && (f.client || f.server)) return `${item.kitchen}|${f.transport ?? ""}|${f.client}|${f.server}`;
  if (typeof p.src === "string" && typeof p.dst === "string") {
    return `${item.kitchen}||${[p.src, p.dst].sort().join("|")}`;
  }
  return null;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function scalar(k, v) {
  if (v === null || v === undefined) return "null";
  if (isEpoch(v) && isTimeKey(k)) return `${fmtDateTime(v)}  (${v})`;
  if (k === "latency" || k.startsWith("time_to_")) return `${fmtMs(num(v))}  (${v} s)`;
  if (/_(bytes|length)$|^size$/.test(k) && num(v) !== null) return `${fmtBytes(v)}  (${v})`;
  if (typeof v === "string") return clip(v, BODY_CLIP);
  return String(v);
}

// Header lists ([[name, value], ...]) read best as a two-column table.
function isHeaderList(v) {
  return Array.isArray(v) && v.length > 0 && v.every((h) => Array.isArray(h) && h.length === 2);
}

/** A Wireshark display filter for the packets of a dumpling: its endpoints and its time
 *  span (request to response). For a capture the kitchen kept with ``nd-sniff -w FILE``:
 *  kitchens do not tell the hub where they write, so the page cannot link to the file. */
export function packetFilter(item) {
  const p = item.d.payload;
  if (!isObj(p)) return null;
  const f = isObj(p.flow) ? p.flow : {};
  const a = p.src ?? f.client, b = p.dst ?? f.server;
  const t = num(p.timestamp) ?? num(item.t);
  if (typeof a !== "string" || typeof b !== "string" || t === null) return null;
  const split = (e) => {
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(e);
    return m ? [m[1], m[2]] : [e, null];
  };
  const [ha, pa] = split(a), [hb, pb] = split(b);
  const ip = (h) => (h.includes(":") ? "ipv6.addr" : "ip.addr");
  const transport = f.transport === "udp" || p.transport === "udp" ? "udp" : "tcp";
  const parts = [`${ip(ha)} == ${ha}`, `${ip(hb)} == ${hb}`];
  if (pa && pb) parts.push(`${transport}.port == ${pa}`, `${transport}.port == ${pb}`);
  const span = Math.max(0, num(p.latency) ?? 0);
  parts.push(`frame.time_epoch >= ${(t - 1e-5).toFixed(6)}`, `frame.time_epoch <= ${(t + span + 1e-5).toFixed(6)}`);
  return parts.join(" && ");
}

/** A nested tree: objects and arrays as <details> (open to depth 2), leaves as key: value. */
export function tree(value, key = "", depth = 0) {
  if (isHeaderList(value)) {
    const t = el("table", "tbl compact headers");
    for (const [n, v] of value) {
      const tr = document.createElement("tr");
      tr.append(el("th", "", clip(String(n), 200)), el("td", "", clip(String(v), 2000)));
      t.appendChild(tr);
    }
    const box = el("details", "node");
    box.open = depth < 3;
    box.append(el("summary", "key", `${key} (${value.length})`), t);
    return box;
  }
  if (isObj(value) || Array.isArray(value)) {
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
    const box = el("details", "node");
    box.open = depth < 2;
    box.appendChild(el("summary", "key", `${key}${Array.isArray(value) ? ` [${entries.length}]` : ""}`));
    const ul = el("ul", "tree");
    for (const [k, v] of entries.slice(0, 500)) {
      const li = document.createElement("li");
      li.appendChild(tree(v, k, depth + 1));
      ul.appendChild(li);
    }
    if (entries.length > 500) ul.appendChild(el("li", "muted", `… ${entries.length - 500} more`));
    box.appendChild(ul);
    return box;
  }
  const line = el("div", "leaf");
  line.dataset.key = key;
  line.append(el("span", "key", `${key}: `), el("span", typeof value === "string" ? "s" : "n", scalar(key, value)));
  return line;
}

/** Request and response columns for a transaction-like payload (HTTP/1.1, HTTP/2, gRPC,
 *  DNS), or null when it has no such halves. */
export function sides(p) {
  if (!isObj(p)) return null;
  const req = {}, resp = {};
  for (const [k, v] of Object.entries(p)) {
    if (k.startsWith("request_") || REQUEST_KEYS.has(k)) req[k] = v;
    else if (k.startsWith("response_") || RESPONSE_KEYS.has(k)) resp[k] = v;
  }
  if (!Object.keys(req).length || !Object.keys(resp).length) return null;
  return { req, resp };
}

// Pretty JSON with token classes, built from text nodes.
export function highlightJson(pre, value) {
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

/** The pane. ``ctx.flowItems(item)`` gives the kept dumplings of a flow, oldest first;
 *  ``ctx.timeText(item)`` a time for a flow row. */
export function createDetail(ctx) {
  const state = { item: null, json: "", tab: "decoded" };
  const pane = $("detail");

  function selectTab(name) {
    state.tab = name;
    for (const b of pane.querySelectorAll("[role=tab]")) {
      const on = b.dataset.tab === name;
      b.setAttribute("aria-selected", String(on));
      b.tabIndex = on ? 0 : -1;
    }
    for (const t of ["decoded", "flow", "json"]) $(`detail-${t}`).hidden = t !== name;
  }

  function decoded(item) {
    const d = item.d, m = isObj(d.metadata) ? d.metadata : {}, p = d.payload;
    const box = document.createDocumentFragment();
    const meta = el("dl", "meta");
    const add = (k, v) => { const div = el("div"); div.dataset.key = k; div.append(el("dt", "", k), el("dd", "", v)); meta.appendChild(div); };
    add("chef", String(m.chef ?? DASH));
    add("kitchen", item.kitchen);
    if (m.host) add("host", String(m.host));
    add("driver", String(m.driver ?? DASH));
    if (m.sequence !== undefined) add("sequence", String(m.sequence));
    if (num(m.capture_time) !== null) add("captured", fmtDateTime(m.capture_time));
    if (num(m.creation_time) !== null) add("made", fmtDateTime(m.creation_time));
    if (item.at) add("received here", `${fmtDateTime(item.at / 1000)} (local wall clock)`);
    box.appendChild(meta);
    if (isObj(p) && typeof p.summary === "string") box.appendChild(el("p", "detail-summary", p.summary));
    const pf = packetFilter(item);
    if (pf) {
      const wrap = el("p", "packets-hint");
      wrap.append(el("span", "muted", `Its packets, in a capture kitchen ${item.kitchen} kept (nd-sniff -w FILE): `),
        el("code", "", `tshark -r FILE -Y '${pf}'`));
      wrap.id = "detail-packets";
      wrap.dataset.filter = pf;
      box.appendChild(wrap);
    }
    const halves = sides(p);
    if (halves) {
      const cols = el("div", "sides");
      for (const [name, half, id] of [["Request", halves.req, "detail-request"], ["Response", halves.resp, "detail-response"]]) {
        const col = el("section", "side");
        col.id = id;
        col.appendChild(el("h4", "", name));
        for (const [k, v] of Object.entries(half)) col.appendChild(tree(v, k, 1));
        cols.appendChild(col);
      }
      box.appendChild(cols);
      const rest = {};
      for (const [k, v] of Object.entries(p)) if (!(k in halves.req) && !(k in halves.resp) && k !== "summary") rest[k] = v;
      box.appendChild(tree(rest, "payload", 0));
    } else {
      box.appendChild(tree(p, "payload", 0));
    }
    $("detail-decoded").replaceChildren(box);
  }

  function flow(item) {
    const list = $("detail-flow");
    const items = ctx.flowItems(item);
    if (!items) { list.replaceChildren(el("p", "muted", "this dumpling names no flow")); return; }
    const ol = el("ol", "flow-list");
    for (const it of items) {
      const li = el("li");
      li.tabIndex = 0;
      li.dataset.id = String(it.id);
      if (it === item) li.className = "current";
      li.append(el("span", "time", ctx.timeText(it)), el("span", `chef chef-${chefColor(it.chef)}`, it.chef),
        el("span", "summary", clip(it.summary, 300)));
      ol.appendChild(li);
    }
    const note = el("p", "muted", `${items.length} kept dumpling${items.length === 1 ? "" : "s"} of this flow`);
    list.replaceChildren(note, ol);
  }

  function open(item) {
    state.item = item;
    pane.hidden = false;
    pane.dataset.id = String(item.id);
    document.body.classList.add("has-detail");
    $("detail-title").textContent = `${item.chef} · ${item.kitchen}`;
    decoded(item);
    flow(item);
    state.json = highlightJson($("detail-json"), item.d);
    selectTab(state.tab);
  }

  function close() {
    state.item = null;
    pane.hidden = true;
    delete pane.dataset.id;
    document.body.classList.remove("has-detail");
  }

  pane.querySelector("[role=tablist]").addEventListener("click", (ev) => {
    const b = ev.target.closest("[role=tab]");
    if (b) selectTab(b.dataset.tab);
  });
  pane.querySelector("[role=tablist]").addEventListener("keydown", (ev) => {
    if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
    const tabs = [...pane.querySelectorAll("[role=tab]")];
    const i = tabs.findIndex((b) => b.dataset.tab === state.tab);
    const j = (i + (ev.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length;
    selectTab(tabs[j].dataset.tab);
    tabs[j].focus();
  });
  $("detail-close").addEventListener("click", close);
  $("detail-copy").addEventListener("click", async () => {
    const b = $("detail-copy");
    try { await navigator.clipboard.writeText(state.json); b.textContent = "Copied"; } catch (_) { b.textContent = "Copy failed"; }
    setTimeout(() => { b.textContent = "Copy JSON"; }, 1500);
  });
  const pick = (ev) => {
    const li = ev.target.closest("li[data-id]");
    if (!li) return;
    const it = ctx.byId(Number(li.dataset.id));
    if (it) { open(it); $("detail-flow").querySelector("li.current")?.focus(); }
  };
  $("detail-flow").addEventListener("click", pick);
  $("detail-flow").addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(ev); } });
  return { open, close, get item() { return state.item; } };
}
