// Export of the filtered view: JSON lines (the dumplings as the hub sent them), CSV (one
// row per dumpling, the columns an analyst sorts on) and HAR 1.2 for HTTP transactions.
// Pure functions over the kept items; the page turns the text into a download.

import { isObj, num } from "./util.js";

export function jsonLines(items) {
  return items.map((it) => JSON.stringify(it.d)).join("\n") + (items.length ? "\n" : "");
}

const CSV_COLS = ["time", "kitchen", "chef", "src", "dst", "summary", "latency", "status"];

function csvField(v) {
  if (v === null || v === undefined) return "";
  let s = typeof v === "object" ? JSON.stringify(v) : String(v);
  // A cell starting with = + - @ is a formula to a spreadsheet: quote it as text.
  if (/^[=+\-@\t\r]/.test(s) && !/^-?\d+(\.\d+)?$/.test(s)) s = "'" + s;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csv(items) {
  const lines = [CSV_COLS.join(",")];
  for (const it of items) {
    const p = isObj(it.d.payload) ? it.d.payload : {};
    const f = isObj(p.flow) ? p.flow : {};
    const t = num(it.t) === null ? "" : new Date(it.t * 1000).toISOString();
    lines.push([t, it.kitchen, it.chef, p.src ?? f.client, p.dst ?? f.server, it.summary,
      p.latency, p.status ?? p.grpc_status ?? p.rcode].map(csvField).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

const headers = (list) => (Array.isArray(list) ? list : [])
  .filter((h) => Array.isArray(h) && h.length === 2)
  .map(([name, value]) => ({ name: String(name), value: String(value) }));

const HTTP_CHEFS = new Set(["Http1Chef", "Http2Chef", "GrpcChef"]);

/** HAR 1.2 of the HTTP/1.1, HTTP/2 and gRPC transactions among the items. Values a chef
 *  does not know are -1, as HAR asks. */
export function har(items, creatorVersion = "") {
  const entries = [];
  for (const it of items) {
    const p = it.d.payload;
    if (!HTTP_CHEFS.has(it.chef) || !isObj(p) || (p.method === undefined && p.path === undefined)) continue;
    const host = p.host ?? p.authority ?? (isObj(p.flow) ? p.flow.server : p.dst) ?? "";
    const scheme = p.scheme ?? "http";
    const path = String(p.path ?? "/");
    const version = it.chef === "Http1Chef" ? String(p.version ?? "HTTP/1.1") : "HTTP/2";
    const latencyMs = num(p.latency) === null ? -1 : p.latency * 1000;
    const status = num(Number(p.status ?? p.http_status)) ?? 0;
    const start = num(p.timestamp) ?? num(it.t) ?? 0;
    entries.push({
      startedDateTime: new Date(start * 1000).toISOString(),
      time: latencyMs,
      request: {
        // gRPC's "method" is the RPC's name; on the wire every call is a POST.
        method: it.chef === "GrpcChef" ? "POST" : String(p.method ?? "GET"),
        url: `${scheme}://${host}${path.startsWith("/") ? "" : "/"}${path}`,
        httpVersion: version, cookies: [], headers: headers(p.request_headers), queryString: [],
        headersSize: -1, bodySize: num(p.request_body_length) ?? num(p.request_bytes) ?? -1,
        ...(typeof p.request_body === "string" ? { postData: { mimeType: "", text: p.request_body } } : {}),
      },
      response: {
        status, statusText: String(p.reason ?? p.grpc_status_name ?? ""), httpVersion: String(p.response_version ?? version),
        cookies: [], headers: headers(p.response_headers), redirectURL: "",
        headersSize: -1, bodySize: num(p.response_body_length) ?? num(p.response_bytes) ?? -1,
        content: {
          size: num(p.response_body_length) ?? num(p.response_bytes) ?? 0,
          mimeType: String(p.content_type ?? p.response_content_type ?? ""),
          ...(typeof p.response_body === "string" ? { text: p.response_body } : {}),
        },
      },
      cache: {},
      timings: { send: 0, wait: latencyMs, receive: 0 },
      serverIPAddress: isObj(p.flow) && typeof p.flow.server === "string" ? p.flow.server.replace(/:\d+$/, "").replace(/^\[|\]$/g, "") : undefined,
      comment: `${it.chef} from kitchen ${it.kitchen}`,
    });
  }
  return JSON.stringify({ log: { version: "1.2", creator: { name: "netdumplings nd-web", version: creatorVersion }, entries } }, null, 1);
}

/** Hand text to the browser as a file download. */
export function download(text, name, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
