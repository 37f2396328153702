// Statistics like Wireshark's menu of that name: endpoints, conversations and protocols
// (dumplings, bytes, rates and latency percentiles per chef, layers from PacketCountChef).
//
// Folded from the dumplings the page's filter lets through, so the tables describe what
// the list shows; bounded like every other model (least recently seen go first).

import { $, DASH, isObj, num, touch, cell, row, fillBody, fmtBytes, fmtCount, fmtRate, fmtMs, chefColor } from "./util.js";
import { hostOf } from "./filter.js";

const MAX_ROWS = 100;       // rows drawn per table
const LATENCIES = 1000;     // latencies kept per chef for percentiles
const RATE_WINDOW = 10;     // seconds of arrivals a rate is measured over

// Bytes a dumpling says it carried: a packet's size, or a transaction's two bodies.
export function bytesOf(p) {
  if (!isObj(p)) return 0;
  if (num(p.size) !== null) return p.size;
  let b = 0;
  for (const k of ["request_body_length", "response_body_length", "request_bytes", "response_bytes"]) {
    if (num(p[k]) !== null) b += p[k];
  }
  return b;
}

function ends(p) {
  if (!isObj(p)) return null;
  const f = isObj(p.flow) ? p.flow : {};
  const a = p.src ?? f.client ?? p.sender_ip;
  const b = p.dst ?? f.server ?? p.target_ip ?? p.server_address;
  if (typeof a !== "string" || typeof b !== "string") return null;
  return [a, b];
}

/** p-th percentile (0..100) of an unsorted list, nearest rank. */
export function percentile(xs, p) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

export function createStats() {
  const m = { endpoints: new Map(), conversations: new Map(), chefs: new Map() };

  function reset() {
    m.endpoints.clear();
    m.conversations.clear();
    m.chefs.clear();
  }

  /** Fold one dumpling in; ``now`` is the page's clock in seconds (for rates). */
  function add(item, now) {
    const p = item.d.payload;
    const bytes = bytesOf(p);
    // Packets: dumplings that each stand for one packet (TcpConnChef's packet events,
    // ARP); other chefs' dumplings stand for messages or transactions.
    const pkts = isObj(p) && (p.event === "packet" || (item.chef === "ARPChef" && p.sender_ip !== undefined)) ? 1 : 0;
    const c = touch(m.chefs, item.chef, m.chefs.get(item.chef) ||
      { chef: item.chef, n: 0, bytes: 0, lat: [], arrivals: [] });
    c.n++;
    c.bytes += bytes;
    const lat = isObj(p) ? num(p.latency) : null;
    if (lat !== null) { c.lat.push(lat); if (c.lat.length > LATENCIES) c.lat.shift(); }
    const sec = Math.floor(now);
    const last = c.arrivals[c.arrivals.length - 1];
    if (last && last[0] === sec) last[1]++; else c.arrivals.push([sec, 1]);
    while (c.arrivals.length && c.arrivals[0][0] <= sec - RATE_WINDOW) c.arrivals.shift();

    const e = ends(p);
    if (!e) return;
    // Endpoints by address (like Wireshark's IPv4 tab), conversations by address and
    // port (its TCP / UDP tabs: on one host, ports are what tell talkers apart).
    const [a, b] = e;
    const ha = hostOf(a), hb = hostOf(b);
    for (const [host, sent] of [[ha, true], [hb, false]]) {
      const ep = touch(m.endpoints, host, m.endpoints.get(host) ||
        { host, n: 0, pkts: 0, bytes: 0, tx: 0, rx: 0, protocols: new Set() });
      ep.n++;
      ep.pkts += pkts;
      ep.bytes += bytes;
      if (sent) ep.tx++; else ep.rx++;
      if (ep.protocols.size < 12) ep.protocols.add(item.chef);
      if (ha === hb) { if (sent) ep.rx++; break; }
    }
    const [x, y] = a <= b ? [a, b] : [b, a];
    const key = `${x}|${y}`;
    const cv = touch(m.conversations, key, m.conversations.get(key) ||
      { a: x, b: y, n: 0, pkts: 0, bytes: 0, ab: 0, ba: 0, protocols: new Set(), first: item.t, last: item.t });
    cv.n++;
    cv.pkts += pkts;
    cv.bytes += bytes;
    if (a === x) cv.ab++; else cv.ba++;
    if (cv.protocols.size < 12) cv.protocols.add(item.chef);
    if (num(item.t) !== null) {
      if (cv.first === null || item.t < cv.first) cv.first = item.t;
      if (cv.last === null || item.t > cv.last) cv.last = item.t;
    }
  }

  function rateOf(c, now) {
    const sec = Math.floor(now);
    let n = 0;
    for (const [s, k] of c.arrivals) if (s > sec - RATE_WINDOW && s < sec) n += k;
    return n / (RATE_WINDOW - 1);
  }

  return { m, reset, add, rateOf };
}

// Sortable tables: the column's key and whether it sorts as a number.
const TABLES = {
  endpoints: {
    cols: [["address", "host", false], ["dumplings", "n", true], ["sent", "tx", true], ["received", "rx", true],
      ["packets", "pkts", true], ["bytes", "bytes", true], ["protocols", "protocols", false]],
    rows: (m) => [...m.endpoints.values()],
    filter: (r) => `ip.addr == ${r.host}`,
    cells: (r) => [cell(r.host, "addr"), cell(fmtCount(r.n), "num"), cell(fmtCount(r.tx), "num"), cell(fmtCount(r.rx), "num"),
      cell(fmtCount(r.pkts), "num"), cell(fmtBytes(r.bytes), "num"), cell([...r.protocols].join(", "), "muted")],
  },
  conversations: {
    cols: [["address A", "a", false], ["address B", "b", false], ["dumplings", "n", true], ["A → B", "ab", true],
      ["B → A", "ba", true], ["packets", "pkts", true], ["bytes", "bytes", true], ["duration", "dur", true], ["protocols", "protocols", false]],
    rows: (m) => [...m.conversations.values()].map((c) => ({ ...c, dur: c.first !== null && c.last !== null ? c.last - c.first : 0 })),
    filter: (r) => (hostOf(r.a) === hostOf(r.b)
      ? `ip.addr == ${hostOf(r.a)} and port == ${r.a.replace(/^.*:/, "")} and port == ${r.b.replace(/^.*:/, "")}`
      : `ip.addr == ${hostOf(r.a)} and ip.addr == ${hostOf(r.b)}`),
    cells: (r) => [cell(r.a, "addr"), cell(r.b, "addr"), cell(fmtCount(r.n), "num"), cell(fmtCount(r.ab), "num"),
      cell(fmtCount(r.ba), "num"), cell(fmtCount(r.pkts), "num"), cell(fmtBytes(r.bytes), "num"), cell(`${r.dur.toFixed(3)} s`, "num"),
      cell([...r.protocols].join(", "), "muted")],
  },
  protocols: {
    cols: [["chef", "chef", false], ["dumplings", "n", true], ["share", "share", true], ["/s", "rate", true],
      ["bytes", "bytes", true], ["p50", "p50", true], ["p95", "p95", true], ["p99", "p99", true]],
    rows: (m, rateOf, now) => {
      const total = [...m.chefs.values()].reduce((a, c) => a + c.n, 0) || 1;
      return [...m.chefs.values()].map((c) => ({
        chef: c.chef, n: c.n, share: c.n / total, rate: rateOf(c, now), bytes: c.bytes,
        p50: percentile(c.lat, 50), p95: percentile(c.lat, 95), p99: percentile(c.lat, 99),
      }));
    },
    filter: (r) => `chef == ${JSON.stringify(r.chef)}`,
    cells: (r) => [cell(r.chef, `chef chef-${chefColor(r.chef)}`), cell(fmtCount(r.n), "num"),
      cell(`${(r.share * 100).toFixed(1)}%`, "num"), cell(fmtRate(r.rate), "num"), cell(fmtBytes(r.bytes), "num"),
      cell(r.p50 === null ? DASH : fmtMs(r.p50), "num p50"), cell(r.p95 === null ? DASH : fmtMs(r.p95), "num p95"),
      cell(r.p99 === null ? DASH : fmtMs(r.p99), "num p99")],
  },
};

/** The panel: tabs, sortable headers, rows that add a filter when clicked or on Enter.
 *  ``ctx.addFilter(expr)``, ``ctx.layers()`` (PacketCountChef totals). */
export function createStatsPanel(stats, ctx) {
  const ui = { tab: "endpoints", sort: { endpoints: ["n", -1], conversations: ["n", -1], protocols: ["n", -1] } };
  const table = $("stats-table");

  function head() {
    const spec = TABLES[ui.tab];
    const [key, dir] = ui.sort[ui.tab];
    const tr = document.createElement("tr");
    for (const [label, k, isNum] of spec.cols) {
      const th = document.createElement("th");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "sort";
      b.dataset.sort = k;
      b.textContent = label + (k === key ? (dir < 0 ? " ▼" : " ▲") : "");
      th.appendChild(b);
      if (isNum) th.className = "num";
      th.setAttribute("aria-sort", k === key ? (dir < 0 ? "descending" : "ascending") : "none");
      tr.appendChild(th);
    }
    table.tHead.replaceChildren(tr);
  }

  function render(now) {
    const spec = TABLES[ui.tab];
    const [key, dir] = ui.sort[ui.tab];
    const rows = spec.rows(stats.m, stats.rateOf, now);
    rows.sort((a, b) => {
      const x = a[key], y = b[key];
      if (typeof x === "number" || typeof y === "number") return dir * ((x ?? -1) - (y ?? -1));
      return dir * String(x instanceof Set ? [...x] : x).localeCompare(String(y instanceof Set ? [...y] : y), "en", { numeric: true });
    });
    head();
    const trs = rows.slice(0, MAX_ROWS).map((r) => {
      const tr = row(spec.cells(r), { filter: spec.filter(r) });
      tr.tabIndex = 0;
      tr.title = `click to filter: ${spec.filter(r)}`;
      return tr;
    });
    fillBody(table.tBodies[0], trs, "nothing yet", spec.cols.length);
    $("stats-note").textContent = `${fmtCount(stats.m.endpoints.size)} endpoints · ` +
      `${fmtCount(stats.m.conversations.size)} conversations · ${fmtCount(stats.m.chefs.size)} chefs`;
    renderLayers();
  }

  // Protocol hierarchy from PacketCountChef: each layer's packets as a share of frames.
  function renderLayers() {
    const layers = ctx.layers();
    const top = Math.max(1, ...layers.values());
    const items = [...layers.entries()].map(([layer, n]) => {
      const li = document.createElement("li");
      li.dataset.layer = layer;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.round((n / top) * 100)}%`;
      const text = document.createElement("span");
      text.textContent = `${layer} ${fmtCount(n)} (${((n / top) * 100).toFixed(1)}%)`;
      li.append(bar, text);
      return li;
    });
    $("layers").replaceChildren(...items);
    $("layers-wrap").hidden = !items.length;
  }

  $("stats-tabs").addEventListener("click", (ev) => {
    const b = ev.target.closest("[data-tab]");
    if (!b) return;
    ui.tab = b.dataset.tab;
    for (const x of $("stats-tabs").querySelectorAll("[data-tab]")) x.setAttribute("aria-selected", String(x === b));
    ctx.redraw();
  });
  table.tHead.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-sort]");
    if (!b) return;
    const cur = ui.sort[ui.tab];
    ui.sort[ui.tab] = cur[0] === b.dataset.sort ? [cur[0], -cur[1]] : [b.dataset.sort, TABLES[ui.tab].cols.find((c) => c[1] === b.dataset.sort)[2] ? -1 : 1];
    ctx.redraw();
  });
  const pick = (tr) => { if (tr && tr.dataset.filter) ctx.addFilter(tr.dataset.filter); };
  table.tBodies[0].addEventListener("click", (ev) => pick(ev.target.closest("tr")));
  table.tBodies[0].addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") pick(ev.target.closest("tr"));
  });
  return { render };
}
