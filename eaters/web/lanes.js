// Where the hub is, the eater token, and the page's WebSocket "lanes" to the hub.
//
// The page is two eaters: the data lane carries what the filter asks for (its hello holds
// the hub's share of the filter as a subscription), the status lane only the hub's own
// SystemStatusChef dumplings (and PacketCountChef when the data lane's subscription leaves
// them out, so the packets chart never goes dark). Each has its own queue on the hub, so
// hub status never waits behind a flood of data; a lane that falls behind gets its own
// missed-dumpling notices.

import { isObj } from "./util.js";

const PROTOCOL = "netdumplings/1";
const CLOSE_POLICY = 1008;      // the hub's "authentication failed"
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;

export const config = { hub: null, eater_name: "nd-web" };

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
let memoryToken = null;
const tokenKey = () => `netdumplings-token ${config.hub}`;
export function getToken() {
  try { return sessionStorage.getItem(tokenKey()) || memoryToken; } catch (_) { return memoryToken; }
}
export function setToken(t) {
  try {
    if (t) sessionStorage.setItem(tokenKey(), t); else sessionStorage.removeItem(tokenKey());
  } catch (_) { /* storage off: the token lasts until the page is closed */ }
  memoryToken = t || null;
}

export async function loadConfig() {
  try {
    const r = await fetch("config.json", { cache: "no-store" });
    if (r.ok) Object.assign(config, await r.json());
  } catch (_) { /* served by something without config.json: use the defaults below */ }
  const q = new URLSearchParams(location.search).get("hub");
  if (q && /^wss?:\/\//.test(q)) config.hub = q;
  if (!config.hub) config.hub = `ws://${location.hostname || "127.0.0.1"}:11348`;
  if (fragmentToken) setToken(fragmentToken);
}

/** One eater connection that says hello with ``hello()``'s fields, hands each message's
 *  parsed JSON to ``onData(obj, text)`` and reconnects with backoff. ``onState(state,
 *  text)`` reports connecting / connected / disconnected / error; ``onWelcome(obj|null)``
 *  the hub's welcome (null from a 0.5 hub, which sends none). */
export class Lane {
  constructor(name, { hello, onData, onState, onWelcome, onAuth, canRetry }) {
    this.name = name;
    this.hello = hello;
    this.onData = onData;
    this.onState = onState || (() => {});
    this.onWelcome = onWelcome || (() => {});
    this.onAuth = onAuth || (() => {});
    // A lane that may only retry while another is up (see app.js: the status lane waits
    // for the data lane, so the hub's --startup-grace ends with the data lane's hello).
    this.canRetry = canRetry || (() => true);
    this.up = false;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.connects = 0;
    this.stopped = false;
  }

  connect() {
    clearTimeout(this.timer);
    this.stopped = false;
    this.onState("connecting", `connecting${this.attempt ? ` (attempt ${this.attempt + 1})` : ""}…`);
    let ws;
    try {
      ws = new WebSocket(config.hub);
    } catch (err) {
      this.onState("error", `bad hub URL: ${err.message}`);
      return;
    }
    this.ws = ws;
    let welcomed = false;
    const token = getToken();
    ws.onopen = () => {
      const hello = { eater_name: config.eater_name || "nd-web", protocol: PROTOCOL, batch: true, ...this.hello() };
      if (token) hello.token = token;
      // Back from a hub restart: name the hub we had, so a restarted one hands us what
      // kitchens resent while we were away (its startup grace) instead of relaying it to nobody.
      if (this.hubInstance) hello.resume = this.hubInstance;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") return;  // we asked for JSON; ignore anything else
      let obj;
      try { obj = JSON.parse(ev.data); } catch (_) { return; }
      if (!welcomed) {
        // The first message proves the hub took the hello; a 0.5 hub sends no welcome.
        welcomed = true;
        this.up = true;
        this.attempt = 0;
        this.connects++;
        const isWelcome = isObj(obj) && obj.welcome === "netdumplings";
        if (isWelcome && typeof obj.instance === "string") this.hubInstance = obj.instance.slice(0, 64);
        this.onState("connected", isWelcome && obj.hub_version ? `connected · hub ${obj.hub_version}` : "connected");
        this.onWelcome(isWelcome ? obj : null);
        if (isWelcome) return;
      }
      this.onData(obj, ev.data);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.up = false;
      if (this.stopped) return;
      if (ev.code === CLOSE_POLICY && !welcomed) {
        // The hub wants an eater token (or another one): ask, instead of knocking forever.
        if (token) setToken(null);
        this.onState("error", token ? "the hub refused the eater token" : "the hub needs an eater token");
        this.onAuth();
        return;
      }
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
      this.attempt++;
      const why = ev.reason ? `: ${ev.reason}` : ev.code && ev.code !== 1006 ? ` (code ${ev.code})` : "";
      if (!this.canRetry()) {
        this.onState("disconnected", `disconnected${why} · waiting for the data lane`);
        return;
      }
      this.onState("disconnected", `disconnected${why} · retrying in ${(delay / 1000).toFixed(1)}s`);
      this.timer = setTimeout(() => this.connect(), delay);
    };
    ws.onerror = () => { /* onclose follows and schedules the retry */ };
  }

  /** Say hello again (a new subscription): close and connect at once. */
  restart() {
    const old = this.ws;
    this.ws = null;
    this.up = false;
    if (old) old.close(1000, "new subscription");
    this.attempt = 0;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const old = this.ws;
    this.ws = null;
    this.up = false;
    if (old) old.close(1000, "not needed");
  }
}
