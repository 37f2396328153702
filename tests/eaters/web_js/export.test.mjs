// Unit tests of the dashboard's exports (eaters/web/export.js), run by
// tests/eaters/test_web_filter.py with `node --test`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { csv, har, jsonLines } from "../../../eaters/web/export.js";

const item = (chef, payload, extra = {}) => ({
  chef, kitchen: "k", t: 1700000000.5, summary: payload.summary ?? "", ...extra,
  d: { metadata: { chef, kitchen: "k" }, payload },
});

test("CSV quotes what a spreadsheet would run as a formula, and commas and quotes", () => {
  const out = csv([item("X", { summary: "=HYPERLINK(\"http://evil\")", src: "+1", dst: "a,b", status: -5 })]);
  const [, line] = out.split("\r\n");
  assert.equal(line, '2023-11-14T22:13:20.500Z,k,X,\'+1,"a,b","\'=HYPERLINK(""http://evil"")",,-5');
});

test("JSON lines: one dumpling a line, as received", () => {
  const items = [item("A", { n: 1 }), item("B", { n: 2 })];
  const lines = jsonLines(items).trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((d) => d.payload.n), [1, 2]);
  assert.equal(jsonLines([]), "");
});

test("HAR 1.2 from HTTP/1.1, HTTP/2 and gRPC, nothing from other chefs", () => {
  const h = JSON.parse(har([
    item("Http1Chef", { method: "GET", path: "/x", host: "example.org", status: 404, reason: "Not Found",
      latency: 0.0125, timestamp: 1700000000.25, version: "HTTP/1.1",
      request_headers: [["Host", "example.org"]], response_headers: [["Content-Length", "3"]],
      response_body_length: 3, response_body: "nop", content_type: "text/plain" }),
    item("GrpcChef", { method: "GetDish", path: "/dumplings.Kitchen/GetDish", authority: "k:50051",
      http_status: 200, grpc_status: 0, grpc_status_name: "OK", request_bytes: 10, response_bytes: 20 }),
    item("DNSLookupChef", { name: "x." }),
  ], "1.0"));
  assert.equal(h.log.version, "1.2");
  assert.equal(h.log.entries.length, 2);
  const [a, b] = h.log.entries;
  assert.equal(a.request.url, "http://example.org/x");
  assert.equal(a.response.status, 404);
  assert.equal(a.time, 12.5);
  assert.equal(a.startedDateTime, "2023-11-14T22:13:20.250Z");
  assert.deepEqual(a.request.headers, [{ name: "Host", value: "example.org" }]);
  assert.equal(a.response.content.text, "nop");
  assert.equal(b.request.method, "POST");     // gRPC's "method" is the RPC name
  assert.equal(b.request.url, "http://k:50051/dumplings.Kitchen/GetDish");
  assert.equal(b.request.httpVersion, "HTTP/2");
  assert.equal(b.response.status, 200);
  assert.equal(b.time, -1);     // unknown, as HAR asks
});
