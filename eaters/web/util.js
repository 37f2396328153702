// Small helpers shared by the dashboard's modules: formatting and DOM building.
// Every value shown comes from the network, so text always goes in through
// textContent, never innerHTML.

export const DASH = "-";
export const MAX_KEYS = 1000;  // entries per keyed model: names come from sniffed traffic,
                               // so an attacker can make new ones forever; the least
                               // recently seen go first
export const $ = (id) => document.getElementById(id);

export const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
export const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
export const show = (v) => (v === null || v === undefined || v === "" ? DASH : String(v));

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** One clock for the whole page: a dumpling's capture time as local time with
 *  milliseconds, the date in front when it is not today (replays are often old). */
export function fmtTime(epoch) {
  if (num(epoch) === null) return DASH;
  const d = new Date(epoch * 1000);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  const today = new Date();
  return d.toDateString() === today.toDateString() ? time : `${fmtDate(d)} ${time}`;
}

function fmtDate(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** Full date and time with the UTC offset, for detail views and hover titles. */
export function fmtDateTime(epoch) {
  if (num(epoch) === null) return DASH;
  const d = new Date(epoch * 1000);
  const off = -d.getTimezoneOffset();
  const sign = off < 0 ? "-" : "+";
  const tz = `UTC${sign}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  return `${fmtDate(d)} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.` +
    `${pad(d.getMilliseconds(), 3)} ${tz}`;
}

/** A time cell: capture time shown, the full date and this machine's wall clock when the
 *  page received it on hover. */
export function timeCell(t, receivedAt) {
  const title = `captured ${fmtDateTime(t)}` +
    (receivedAt ? `\nreceived here ${fmtDateTime(receivedAt / 1000)} (local wall clock)` : "");
  const td = cell(fmtTime(t), "time", title);
  if (num(t) !== null) td.dataset.epoch = String(t);
  return td;
}

// Stable colours per chef: from the name, so a chef has the same colour in every panel,
// every tab and after a reload (not the order chefs happened to arrive in).
export const CHEF_COLORS = 10;
export function chefColor(name) {
  let h = 2166136261;
  const s = String(name);
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); }
  return (h >>> 0) % CHEF_COLORS;
}

export function fmtMs(seconds) {
  const s = num(seconds);
  if (s === null) return DASH;
  const ms = s * 1000;
  return ms >= 100 ? `${ms.toFixed(0)} ms` : ms >= 10 ? `${ms.toFixed(1)} ms` : `${ms.toFixed(2)} ms`;
}

export function fmtBytes(n) {
  const v = num(n);
  if (v === null) return DASH;
  if (v < 1024) return `${v} B`;
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(1)} KiB`;
  return `${(v / 1024 / 1024).toFixed(1)} MiB`;
}

export function fmtRate(r) {
  const v = num(r);
  if (v === null) return DASH;
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export function fmtCount(n) {
  const v = num(n);
  return v === null ? DASH : v.toLocaleString("en-US");
}

export function fmtDuration(seconds) {
  const s = num(seconds);
  if (s === null) return DASH;
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}

export function clip(text, n) {
  const s = String(text);
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

export function cell(text, cls, title) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  if (title) td.title = title;
  return td;
}

export function row(cells, attrs) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c);
  if (attrs) for (const [k, v] of Object.entries(attrs)) tr.dataset[k] = v;
  return tr;
}

// Replace a tbody's rows in one go (tables are small and rebuilt only when dirty).
export function fillBody(tbody, rows, emptyText, cols) {
  // A row with keyboard focus keeps it across the redraw (the same row by its key, or the
  // one now at its place), so walking a live table with the arrows works.
  const active = document.activeElement;
  const had = active && active.parentElement === tbody;
  const keyOf = (r) => r.dataset.filter ?? r.dataset.id ?? r.dataset.pv ?? r.dataset.ip ?? r.dataset.tag ?? null;
  const key = had ? keyOf(active) : null;
  const idx = had ? active.sectionRowIndex : -1;
  const frag = document.createDocumentFragment();
  for (const r of rows) frag.appendChild(r);
  if (!rows.length && emptyText) {
    const td = cell(emptyText, "empty");
    td.colSpan = cols;
    frag.appendChild(row([td]));
  }
  tbody.replaceChildren(frag);
  if (had) {
    const again = (key !== null && rows.find((r) => keyOf(r) === key)) || rows[Math.min(idx, rows.length - 1)];
    if (again) again.focus({ preventScroll: true });
  }
}

export function touch(map, key, value, max = MAX_KEYS) {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) map.delete(map.keys().next().value);
  return value;
}

export function countIn(map, key, max) {
  const n = (map.get(key) || 0) + 1;
  if (map.has(key)) map.set(key, n); else touch(map, key, n, max);
}

// Keep a capped array: newest first, oldest dropped.
export function pushCapped(list, item, cap) {
  list.unshift(item);
  if (list.length > cap) list.length = cap;
}

/** When a dumpling happened: the capture time of its packet for packet dumplings (right
 *  for replayed files too), the kitchen's clock for interval dumplings (their capture
 *  time is the last packet's, which stands still on a quiet wire). */
export function timeOf(d) {
  const m = d.metadata;
  if (m.driver === "interval") return num(m.creation_time) ?? num(m.capture_time);
  return num(m.capture_time) ?? num(m.creation_time);
}

/** A table row that opens a dumpling in the detail pane: clickable and reachable by
 *  keyboard (Tab to it, Enter or Space opens; the arrows move between rows). */
export const rowDumpling = new WeakMap();
export function openable(tr, d) {
  if (d) { rowDumpling.set(tr, d); tr.tabIndex = 0; tr.classList.add("openable"); }
  return tr;
}
