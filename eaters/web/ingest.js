// Folding dumplings into the page's models: what arrives on the data lane is counted,
// deduplicated and queued; each render drains the queue into the list, the protocol
// tables and the statistics (only the newest when more arrive than the page can list);
// the status lane feeds the hub panel and, when the filter leaves it out, the chart.

import { isObj, num, show, clip, countIn, timeOf } from "./util.js";

export const STATUS_CHEF = "SystemStatusChef";
export const NOTICE_CHEF = "HubNoticeChef";
export const COUNT_CHEF = "PacketCountChef";
const STREAM_KEEP = 5000;       // dumplings kept: history for a new filter, the flow view, exports
const STREAM_BYTES = 32 << 20;  // ...and at most about this much of their JSON
const MAX_NAMES = 300;          // chefs / kitchens counted by name
const SEEN_KEEP = 50000;        // recent dumplings' identities, to drop resent repeats
// Keeping up (issue: 10,000 dumplings/s): every dumpling is counted and folded into the
// statistics, but at most this many per second go into the kept list and the protocol
// tables; the rest are counted as aggregated, and the page says how many.
export const LIST_PER_SECOND = 2000;

/** ``ui`` holds the filter's predicate (``pred``) and the lanes' flags (``sideCounts``:
 *  PacketCountChef comes on the status lane; ``sideless``: a 0.5 hub, one lane). */
export function createIngest({ model, dirty, ui, panels, chart, stats }) {
  let seq = 0;
  const seen = new Set();

  // One line for dumplings whose chef gives no "summary".
  function summarize(chef, p, fromHub) {
    if (!isObj(p)) return clip(JSON.stringify(p) ?? "", 200);
    if (typeof p.summary === "string") return p.summary;
    if (chef === STATUS_CHEF && fromHub) {
      return `hub: ${show(p.dumpling_kitchen_count)} kitchens, ${show(p.dumpling_eater_count)} eaters, ` +
        `${show(p.total_dumplings_in)} in, ${show(p.total_dumplings_out)} out, ${show(p.total_dumplings_dropped)} dropped`;
    }
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

  // The hub's own dumplings have no kitchen: a kitchen that names its chef like them is
  // not the hub and must not set the hub panel or the missed counters.
  const fromHub = (d) => d.metadata.kitchen === null || d.metadata.kitchen === undefined;

  function ingestData(d, size) {
    if (!isObj(d) || !isObj(d.metadata)) return;
    const m = d.metadata;
    const chef = typeof m.chef === "string" ? m.chef : "?";
    if (chef === NOTICE_CHEF && fromHub(d)) {
      if (isObj(d.payload)) model.missed += num(d.payload.missed) || 0;
      dirty.add("header");
      return;
    }
    const kitchen = fromHub(d) ? "hub" : String(m.kitchen);
    // After a hub restart kitchens resend what the old hub never acknowledged, so a
    // dumpling can come twice: (kitchen, host, sequence, creation_time) names it.
    if (m.sequence !== undefined && m.sequence !== null) {
      const key = `${kitchen}\u0000${m.host}\u0000${m.sequence}\u0000${m.creation_time}`;
      if (seen.has(key)) { model.duplicates++; return; }
      seen.add(key);
      if (seen.size > SEEN_KEEP) seen.delete(seen.values().next().value);
    }
    model.received++;
    countIn(model.chefs, chef, MAX_NAMES);
    countIn(model.kitchens, kitchen, MAX_NAMES);
    const created = num(m.creation_time);
    // Behind is how late kitchens' dumplings arrive: the hub's own (status, notices) are
    // made at the hub a moment ago and would hide a late kitchen's lag.
    if (created !== null && !fromHub(d)) model.lag = Date.now() / 1000 - created;
    if (chef === COUNT_CHEF && !ui.sideCounts && isObj(d.payload) && isObj(d.payload.packet_counts)) {
      chart.onPacketCounts(kitchen, d.payload.packet_counts, m);
    }
    if (chef === STATUS_CHEF && fromHub(d) && ui.sideless && isObj(d.payload)) onStatus(d.payload, d);

    pending.push({ id: ++seq, t: timeOf(d), at: Date.now(), kitchen, chef, summary: "", d, size, ok: false, hay: null });
  }

  // Dumplings wait here between renders. Under load (more than LIST_PER_SECOND), only the
  // newest go into the list and the protocol tables; the older ones of the batch are
  // counted as aggregated and folded into the statistics only - the page keeps up by
  // sampling instead of falling behind, and says so.
  const pending = [];
  let lastDrain = performance.now();

  function drain() {
    const now = performance.now();
    const budget = Math.max(500, Math.round((LIST_PER_SECOND * (now - lastDrain)) / 1000));
    lastDrain = now;
    const n = pending.length;
    if (!n) return;
    const skip = Math.max(0, n - budget);
    for (let i = 0; i < skip; i++) {
      const item = pending[i];
      model.aggregated++;
      item.ok = ui.pred(item);
      if (item.ok) { model.shownMatch++; stats.add(item, item.at / 1000); dirty.add("stats"); }
    }
    for (let i = skip; i < n; i++) keep(pending[i]);
    pending.length = 0;
  }

  function keep(item) {
    const d = item.d;
    try {
      item.summary = clip(summarize(item.chef, d.payload, fromHub(d)), 400);
    } catch (_) {
      item.summary = "(payload not shown)";
    }
    model.stream.push(item);
    model.byId.set(item.id, item);
    model.streamBytes += item.size;
    let drop = 0;
    while (model.stream.length - drop > STREAM_KEEP ||
           (model.streamBytes > STREAM_BYTES && model.stream.length - drop > 1)) {
      model.streamBytes -= model.stream[drop].size;
      model.byId.delete(model.stream[drop].id);
      drop++;
    }
    if (drop) model.stream.splice(0, drop);
    item.ok = ui.pred(item);
    dirty.add("stream");
    if (item.ok) view(item);
  }

  // A dumpling that passed the filter: into the protocol tables and the statistics.
  function view(item) {
    model.shownMatch++;
    stats.add(item, (item.at || Date.now()) / 1000);
    dirty.add("stats");
    const p = item.d.payload;
    if (!isObj(p)) return;
    try {
      switch (item.chef) {
        case "Http1Chef": case "Http2Chef": case "GrpcChef": panels.onHttp(item.chef, p, item.d); break;
        case "DNSLookupChef": panels.onDns(p, item.d); break;
        case "FluentdForwardChef": panels.onFluentd(p, item.d); break;
        case "ZmtpChef": panels.onZmtp(item.kitchen, p, item.d); break;
        case "ARPChef": panels.onArp(item.kitchen, p, item.d); break;
        case "ChannelAccessChef": panels.onCa(p, item.d); break;
        default:
      }
    } catch (err) {
      // A chef with an unexpected payload must not stop the page.
      console.warn("netdumplings: could not use a dumpling from", item.chef, err);
    }
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

  function ingestSide(d) {
    if (!isObj(d) || !isObj(d.metadata) || !isObj(d.payload)) return;
    const chef = d.metadata.chef;
    if (chef === NOTICE_CHEF && fromHub(d)) { model.statusMissed += num(d.payload.missed) || 0; dirty.add("hub"); return; }
    if (chef === STATUS_CHEF && fromHub(d)) { onStatus(d.payload, d); return; }
    if (chef === COUNT_CHEF && ui.sideCounts && isObj(d.payload.packet_counts)) {
      chart.onPacketCounts(String(d.metadata.kitchen), d.payload.packet_counts, d.metadata);
    }
  }


  return { ingestData, ingestSide, drain, view, fromHub };
}
