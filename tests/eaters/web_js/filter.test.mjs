// Unit tests of the dashboard's filter language (eaters/web/filter.js), run by
// tests/eaters/test_web_filter.py with `node --test`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parse, compile, split, format, FilterError, fieldValues } from "../../../eaters/web/filter.js";

const http404 = { kitchen: "k", summary: "GET /x -> 404", d: {
  metadata: { chef: "Http1Chef", kitchen: "k", driver: "packet" },
  payload: { status: 404, latency: 0.06, method: "GET", path: "/x", src: "10.0.0.1:5555",
             dst: "10.0.0.2:80", flow: { client: "10.0.0.1:5555", server: "10.0.0.2:80" },
             request_headers: [["Host", "example.org"]] } } };
const dns = { kitchen: "k2", d: {
  metadata: { chef: "DNSLookupChef", kitchen: "k2", driver: "packet" },
  payload: { name: "www.example.org.", type: "A", rcode: "NOERROR", latency: 0.002,
             src: "[2001:db8::1]:5353", dst: "[2001:db8::53]:53", answers: [{ type: "A", data: "192.0.2.7" }] } } };
const arp = { kitchen: "k", d: { metadata: { chef: "ARPChef", kitchen: "k", driver: "packet" },
  payload: { sender_ip: "192.168.1.5", target_ip: "192.168.1.1", sender_mac: "02:00:00:00:00:01" } } };
const status = { kitchen: "hub", d: { metadata: { chef: "SystemStatusChef", kitchen: null, driver: "interval" },
  payload: { total_dumplings_in: 5 } } };
const all = [http404, dns, arp, status];
const run = (expr) => all.filter(compile(parse(expr))).map((x) => x.d.metadata.chef);

test("the issue's examples", () => {
  assert.deepEqual(run('chef == "Http1Chef" and status >= 400'), ["Http1Chef"]);
  assert.deepEqual(run("status>=400"), ["Http1Chef"]);
  assert.deepEqual(run("ip.addr == 10.0.0.1"), ["Http1Chef"]);
  assert.deepEqual(run("ip.addr == 10.0.0.2"), ["Http1Chef"]);
  assert.deepEqual(run("latency > 50ms"), ["Http1Chef"]);
  assert.deepEqual(run("latency < 50ms"), ["DNSLookupChef"]);
  assert.deepEqual(run('name ~ "example"'), ["DNSLookupChef"]);
  assert.deepEqual(run("not chef in {ARPChef, PacketCountChef}"), ["Http1Chef", "DNSLookupChef", "SystemStatusChef"]);
});

test("addresses: IPv6 in brackets, ARP's sender and target, CIDR, src and dst", () => {
  assert.deepEqual(run("ip.addr == 2001:db8::53"), ["DNSLookupChef"]);
  assert.deepEqual(run("ip.addr == 192.168.1.1"), ["ARPChef"]);
  assert.deepEqual(run("ip.addr == 192.168.0.0/16"), ["ARPChef"]);
  assert.deepEqual(run("ip.src == 10.0.0.2"), []);
  assert.deepEqual(run("ip.dst == 10.0.0.2"), ["Http1Chef"]);
  assert.deepEqual(run("port == 53"), ["DNSLookupChef"]);
});

test("nested fields, lists, metadata, free text, existence", () => {
  assert.deepEqual(run("answers.data == 192.0.2.7"), ["DNSLookupChef"]);
  assert.deepEqual(run("flow.server == \"10.0.0.2:80\""), ["Http1Chef"]);
  assert.deepEqual(run("driver == interval"), ["SystemStatusChef"]);
  assert.deepEqual(run("metadata.kitchen == k2"), ["DNSLookupChef"]);
  assert.deepEqual(run('"get /x"'), ["Http1Chef"]);
  assert.deepEqual(run("sender_mac"), ["ARPChef"]);
  assert.deepEqual(run("request_headers contains example"), ["Http1Chef"]);
  assert.deepEqual(run("method matches '^g'"), ["Http1Chef"]);
});

test("!= is 'no value equals', and a missing field fails every comparison", () => {
  assert.deepEqual(run("status != 404"), []);
  assert.deepEqual(run("status != 200"), ["Http1Chef"]);
  assert.deepEqual(run("not status == 404"), ["DNSLookupChef", "ARPChef", "SystemStatusChef"]);
});

test("precedence: not > and > or; && || ! spellings", () => {
  assert.deepEqual(run("chef == ARPChef or chef == DNSLookupChef and rcode == NOERROR"), ["DNSLookupChef", "ARPChef"]);
  assert.deepEqual(run("(chef == ARPChef || chef == DNSLookupChef) && !rcode == NOERROR"), ["ARPChef"]);
  assert.equal(format(parse("a or b and not c")), "a or b and not c");
  assert.equal(format(parse("(a or b) and c")), "(a or b) and c");
});

test("units", () => {
  assert.equal(parse("latency > 50ms").value.v, 0.05);
  assert.equal(parse("latency > 250us").value.v, 0.00025);
  assert.equal(parse("size > 2KiB").value.v, 2048);
  assert.equal(parse("latency > 2s").value.v, 2);
});

test("errors say where", () => {
  const cases = [
    ["status >= ", 10, /expected a value/],
    ["status = 4", 7, /use ==/],
    ["status >= big", 10, /compares numbers/],
    ["(a or b", 0, /expected '\)'/],
    ["a b", 2, /missing 'and' or 'or'/],
    ['name == "abc', 8, /unterminated string/],
    ["chef in {}", 8, /empty set/],
    ["chef in ARPChef", 8, /expected '\{'/],
    ["name ~ '('", 7, /regular expression/],
    ["and", 0, /not a field name|expected a field/],
    ["a & b", 2, /use &&/],
  ];
  for (const [text, at, msg] of cases) {
    assert.throws(() => parse(text), (e) => e instanceof FilterError && e.start === at && msg.test(e.message),
      `${text}`);
  }
  assert.equal(parse(""), null);
  assert.equal(parse("   "), null);
  assert.throws(() => parse("(".repeat(100) + "a" + ")".repeat(100)), /nests too deeply/);
  assert.throws(() => parse("a".repeat(5000)), /longer than/);
});

test("the hub's share: allow-lists of chefs, kitchens and drivers in a top-level and", () => {
  const s = (t) => split(parse(t));
  assert.deepEqual(s('chef == "Http1Chef" and status >= 400').subscription, { chefs: ["Http1Chef"] });
  assert.equal(format(s('chef == "Http1Chef" and status >= 400').page), "status >= 400");
  assert.deepEqual(s("chef in {A, B} and kitchen == k1 and driver == packet").subscription,
    { chefs: ["A", "B"], kitchens: ["k1"], drivers: ["packet"] });
  assert.equal(s("chef in {A, B} and kitchen == k1").page, null);
  assert.deepEqual(s("chef == A or chef == B").subscription, { chefs: ["A", "B"] });
  assert.deepEqual(s("chef in {A, B} and chef in {B, C}").subscription, { chefs: ["B"] });
  // The hub has no negation, no comparisons, no ors across keys: all in the page.
  for (const t of ["not chef in {ARPChef}", "chef != A", "chef == A or kitchen == k", "chef ~ A",
    "driver == nonsense", "status >= 400"]) {
    assert.deepEqual(s(t).subscription, {}, t);
    assert.equal(format(s(t).page), format(parse(t)), t);
  }
  assert.deepEqual(split(null), { subscription: {}, hub: null, page: null });
});

test("fieldValues flattens lists and leaves out absent fields", () => {
  assert.deepEqual(fieldValues(dns, "answers.type"), ["A"]);
  assert.deepEqual(fieldValues(dns, "nope"), []);
  assert.deepEqual(fieldValues(http404, "chef"), ["Http1Chef"]);
});
