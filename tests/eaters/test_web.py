"""The web dashboard (nd-web) in a real browser.

A real ``nd-hub`` runs on free ports, ``nd-web`` serves the page, Debian's Chromium (driven
by Playwright) opens it, and real kitchens (``nd-sniff -r``) replay the test captures into
the hub. Every panel is checked against the captures' ``.expected.json`` ground truth.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import DATA, Proc, expected, free_port, nd_command, wait_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_MS = 20_000


def nd_web_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "nd-web"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "netdumplings.cli.web"]


# -- the processes ------------------------------------------------------------------------


class Stack:
    """A hub and nd-web; ``replay`` runs a kitchen over a test capture into the hub."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.in_port, self.out_port, self.web_port = free_port(), free_port(), free_port()
        self.hub: Proc | None = None
        self.start_hub()
        self.web = Proc(nd_web_cmd() + ["--hub", f"127.0.0.1:{self.out_port}",
                                        "--port", str(self.web_port), "--address", "127.0.0.1"])
        self.web.wait_line("dashboard on", timeout=15)
        self.url = f"http://127.0.0.1:{self.web_port}/"
        self.others: list[Proc] = []

    def start_hub(self) -> None:
        self.hub = Proc(nd_command("nd-hub") + ["--in-port", str(self.in_port),
                                                "--out-port", str(self.out_port),
                                                "--status-freq", "0.5"])
        wait_port(self.in_port)
        wait_port(self.out_port)

    def stop_hub(self) -> None:
        assert self.hub is not None
        self.hub.terminate()

    def replay(self, name: str, *chefs: str, kitchen: str, options: tuple[str, ...] = (),
               extra: tuple[str, ...] = (), path: Path | None = None) -> None:
        cmd = nd_command("nd-sniff") + ["-r", str(path or DATA / name), "--hub",
                                        f"127.0.0.1:{self.in_port}", "-n", kitchen,
                                        "--no-progress", *extra]
        for chef in chefs:
            cmd += ["-c", chef]
        for opt in options:
            cmd += ["-o", opt]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr

    def spawn(self, cmd: list[str]) -> Proc:
        p = Proc(cmd)
        self.others.append(p)
        return p

    def close(self) -> None:
        for p in [*self.others, self.web, self.hub]:
            if p is not None:
                p.kill()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True,
                       timeout=600, check=False)
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed and could not be installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1300})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.goto(stack.url)
    wait_connected(pg)
    yield pg
    context.close()
    # Chromium itself logs each refused WebSocket attempt while the page retries a hub
    # that is down; those are expected. Anything else is a bug in the page.
    errors = [e for e in errors if not re.match(r"WebSocket connection to '.*' failed", e)]
    assert errors == [], f"errors in the page: {errors}"


# -- page helpers -------------------------------------------------------------------------


def wait_connected(pg: Any, connects: int = 1) -> None:
    pg.wait_for_function(
        f"""() => {{ const c = document.getElementById('conn');
            return c.dataset.state === 'connected' && +c.dataset.connects >= {connects}; }}""",
        timeout=WAIT_MS)


def wait_rows(pg: Any, selector: str, n: int) -> None:
    """Until ``selector`` (a tbody) has at least n data rows."""
    pg.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel + ' tr:not(:has(td.empty))').length >= n",
        arg=[selector, n], timeout=WAIT_MS)


def wait_live_kitchen(pg: Any, kitchen: str) -> None:
    """nd-sniff joins the hub before it opens its capture socket: its first interval
    dumpling is the sign that it is capturing."""
    pg.wait_for_selector(f"#stream-table tr[data-kitchen={kitchen}][data-chef=PacketCountChef]",
                         state="attached", timeout=WAIT_MS)


def table(pg: Any, table_id: str) -> list[list[str]]:
    return pg.eval_on_selector_all(
        f"#{table_id} tbody tr:not(:has(td.empty))",
        "rows => rows.map(r => [...r.cells].map(c => c.textContent))")


def stream_rows(pg: Any) -> list[dict[str, str]]:
    return pg.eval_on_selector_all(
        "#stream-table tbody tr[data-id]",
        "rows => rows.map(r => ({id: r.dataset.id, chef: r.dataset.chef, "
        "kitchen: r.dataset.kitchen, summary: r.cells[3].textContent}))")


def received(pg: Any) -> int:
    return pg.evaluate("window.netdumplings.received")


def set_filter(pg: Any, text: str) -> None:
    """Type a filter and press Enter, as a person would."""
    pg.fill("#filter", "")
    pg.type("#filter", text)
    pg.press("#filter", "Enter")
    pg.wait_for_function("t => new URLSearchParams(location.search).get('filter') === t || "
                         "(t === '' && !location.search.includes('filter='))", arg=text,
                         timeout=WAIT_MS)


# -- nd-web without a browser -------------------------------------------------------------


def test_nd_web_help_and_version() -> None:
    out = subprocess.run(nd_web_cmd() + ["--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for flag in ("--hub", "--port", "--address", "--hub-url"):
        assert flag in out.stdout
    out = subprocess.run(nd_web_cmd() + ["--version"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and "nd-web (netdumplings)" in out.stdout
    bad = subprocess.run(nd_web_cmd() + ["--hub", "http://x:1"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "nd-web: error: --hub" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_nd_web_serves_page_and_config(procs: Any) -> None:
    port = free_port()
    web = procs(nd_web_cmd() + ["--hub", "10.1.2.3:4567", "--port", str(port)])
    web.wait_line("dashboard on", timeout=15)

    def get(path: str) -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    status, headers, body = get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="app.js"' in body
    # Nothing from a CDN: every script and stylesheet is local.
    assert not re.search(rb'(src|href)="(https?:)?//', body)
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, headers, body = get("/config.json")
    assert status == 200 and json.loads(body) == {"hub": "ws://10.1.2.3:4567",
                                                  "eater_name": "nd-web"}
    for name, ctype in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
        status, headers, body = get(name)
        assert status == 200 and headers["Content-Type"].startswith(ctype) and len(body) > 1000
    for path in ("/../web_server.py", "/web_server.py", "/%2e%2e/hub.py", "/nope"):
        assert get(path)[0] == 404
    # The port is taken now: a second nd-web fails with one clear line.
    again = subprocess.run(nd_web_cmd() + ["--port", str(port)], capture_output=True, text=True,
                           timeout=30)
    assert again.returncode == 1 and again.stderr.startswith("nd-web: error: cannot serve")


# -- the dashboard ------------------------------------------------------------------------


class UdpBursts:
    """Bursts of UDP datagrams to one loopback port, with quiet gaps between them (a live
    kitchen pokes its interval chefs when the wire is idle). Bursts stay small enough for
    the capture socket's default receive buffer, so the kernel drops none."""

    def __init__(self, port: int, sizes: tuple[int, ...] = (30, 70, 100, 50, 20, 80),
                 gap: float = 0.7) -> None:
        self.port, self.sizes, self.gap = port, sizes, gap
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            i = 0
            while not self._stop.is_set() and i < 500:  # bounded: at most 500 bursts
                for _ in range(self.sizes[i % len(self.sizes)]):
                    s.sendto(b"dumpling", ("127.0.0.1", self.port))
                    self.sent += 1
                i += 1
                self._stop.wait(self.gap)

    def start(self) -> "UdpBursts":
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(10)
        return self.sent


def test_dashboard_panels_match_the_captures(stack: Stack, page: Any) -> None:
    pg = page
    assert pg.text_content("#hub-url") == f"ws://127.0.0.1:{stack.out_port}"

    # A live kitchen counting packets on lo while the captures are replayed (root only):
    # it fills the packets chart and stays in the hub's kitchen list.
    bursts = None
    if os.geteuid() == 0:
        udp_port = free_port(socket.SOCK_DGRAM)
        stack.spawn(nd_command("nd-sniff") + [
            "-i", "lo", "-f", f"udp port {udp_port}", "-c", "PacketCountChef", "-p", "0.5",
            "--hub", f"127.0.0.1:{stack.in_port}", "-n", "k-live"])
        pg.wait_for_function(
            "() => document.querySelector('#hub-kitchens tr[data-kitchen=k-live]')",
            timeout=WAIT_MS)
        assert table(pg, "hub-kitchens")[0][2] == "PacketCountChef"
        wait_live_kitchen(pg, "k-live")
        bursts = UdpBursts(udp_port).start()

    # HTTP/1.1 ----------------------------------------------------------------------------
    stack.replay("http1-keepalive.pcap", "Http1Chef", "PacketCountChef", kitchen="k-http")
    exp = expected("http1-keepalive.pcap")
    want = [(x["request"]["method"], x["request"]["target"], x["response"]["status"])
            for c in exp["connections"] for x in c["exchanges"]]
    assert len(want) == exp["counts"]["requests"] == 5
    wait_rows(pg, "#http-table tbody", len(want))
    rows = table(pg, "http-table")
    got = [(r[2], r[3], int(r[4].split()[0])) for r in rows]
    assert got == list(reversed(want))  # newest first
    for r in rows:
        assert r[1] == "HTTP/1.1"
        assert re.fullmatch(r"\d+(\.\d+)? ms", r[5]), r
        assert r[7] == exp["connections"][0]["server"]
    assert pg.text_content("#http-note") == "5 seen · 1 errors"
    # The 404 is marked as a client error.
    assert pg.eval_on_selector_all("#http-table td.status.warn", "els => els.length") == 1

    # gRPC (and the HTTP/2 streams under it) -----------------------------------------------
    stack.replay("grpc-calls.pcap", "GrpcChef", kitchen="k-grpc")
    gexp = expected("grpc-calls.pcap")
    wait_rows(pg, "#http-table tbody", 6)
    pg.wait_for_function("() => document.querySelectorAll('#http-table tr[data-proto=gRPC]')"
                         ".length >= 5", timeout=WAIT_MS)
    grpc_rows = [r for r in table(pg, "http-table") if r[1] == "gRPC"]
    grpc_statuses = {r[4] for r in grpc_rows}
    assert "0 OK" in grpc_statuses and "5 NOT_FOUND" in grpc_statuses
    assert any(r[2] == "GetDish" and r[3] == "/dumplings.Kitchen/GetDish" for r in grpc_rows)
    assert gexp["protocol"].startswith("grpc")

    # DNS ---------------------------------------------------------------------------------
    stack.replay("dns-queries.pcap", "DNSLookupChef", kitchen="k-dns")
    dexp = expected("dns-queries.pcap")
    wait_rows(pg, "#dns-table tbody", dexp["counts"]["queries"])
    drows = table(pg, "dns-table")
    assert len(drows) == dexp["counts"]["queries"]
    want_dns = Counter((x["query"]["question"]["name"], x["query"]["question"]["type"],
                        x["response"]["header"]["rcode"]) for x in dexp["exchanges"])
    assert Counter((r[1], r[2], r[3]) for r in drows) == want_dns
    assert sum(r[3] == "NXDOMAIN" for r in drows) == dexp["counts"]["nxdomain"]
    www_a = [x for x in dexp["exchanges"] if x["query"]["question"]["name"] ==
             "www.dumplings.example." and x["query"]["question"]["type"] == "A"][0]
    row_a = [r for r in drows if r[1] == "www.dumplings.example." and r[2] == "A"][0]
    assert row_a[4] == ", ".join(a["data"] for a in www_a["response"]["answers"])

    # Fluentd -----------------------------------------------------------------------------
    stack.replay("fluentd-forward-mode.pcap", "FluentdForwardChef", kitchen="k-fluentd",
                 options=("FluentdForwardChef.ports=24230",))
    fexp = expected("fluentd-forward-mode.pcap")
    events = Counter(e["tag"] for e in fexp["events"])
    messages = Counter(m["tag"] for c in fexp["connections"] for m in c["messages"]
                       if m["dir"] == "client_to_server")
    wait_rows(pg, "#fluentd-table tbody", len(events))
    pg.wait_for_function(
        "n => [...document.querySelectorAll('#fluentd-table td.events')]"
        ".reduce((a, td) => a + +td.textContent, 0) >= n", arg=sum(events.values()),
        timeout=WAIT_MS)
    frows = {r[0]: r for r in table(pg, "fluentd-table")}
    assert set(frows) == set(events)
    for tag, n in events.items():
        assert int(frows[tag][2]) == n, frows[tag]
        assert int(frows[tag][1]) == messages[tag], frows[tag]
        assert frows[tag][3] == "Forward"
    last_orders = [e for e in fexp["events"] if e["tag"] == "kitchen.orders"][-1]["record"]
    assert json.loads(pg.get_attribute("#fluentd-table tr[data-tag='kitchen.orders'] td.record",
                                       "title")) == last_orders

    # ZMTP --------------------------------------------------------------------------------
    stack.replay("zmtp-push-pull.pcap", "ZmtpChef", kitchen="k-zmtp")
    zexp = expected("zmtp-push-pull.pcap")["connections"][0]
    wait_rows(pg, "#zmtp-table tbody", 1)
    pg.wait_for_function("() => (document.querySelector('#zmtp-table td:last-child') || {})"
                         ".textContent?.startsWith('closed')", timeout=WAIT_MS)
    zrow = table(pg, "zmtp-table")[0]
    assert zrow[0] == f"{zexp['client']} → {zexp['server']}"
    assert zrow[1] == f"{zexp['client_socket']['type']} → {zexp['server_socket']['type']}"
    assert zrow[2] == f"{zexp['greeting']['client_to_server']['mechanism']} 3.1"
    assert int(zrow[3]) == len(zexp["messages"]["client_to_server"])
    assert int(zrow[4]) == len(zexp["messages"]["server_to_client"])
    assert float(zrow[5]) > 0

    # ARP ---------------------------------------------------------------------------------
    stack.replay("arp-veth.pcap", "ARPChef", kitchen="k-arp")
    aexp = expected("arp-veth.pcap")
    wait_rows(pg, "#arp-table tbody", 2)
    arows = {r[0]: r for r in table(pg, "arp-table")}
    for host in ("A", "B"):
        h = aexp["hosts"][host]
        assert arows[h["ip"]][1] == h["mac"]
        assert arows[h["ip"]][4] == "none"
    # The absent host never answered, so it is not in the table.
    assert aexp["hosts"]["absent"]["ip"] not in arows
    senders = Counter(a["sender_ip"] for a in aexp["arp"])
    for ip, n in senders.items():
        assert int(arows[ip][2]) == n
    assert pg.eval_on_selector_all("#arp-alerts li", "els => els.length") == 0

    # Packet counts: cumulative totals per layer match the capture --------------------------
    pg.wait_for_function("() => document.querySelector('#packets-legend li[data-layer=TCP]')",
                         timeout=WAIT_MS)
    total_tcp = int(pg.get_attribute("#packets-legend li[data-layer=TCP]", "data-total"))
    assert total_tcp == exp["capture"]["packets"]

    # Hub status: this page is an eater; everything sent was counted in -------------------
    pg.wait_for_function(
        "() => document.querySelector('#hub-eaters tr[data-eater=nd-web]')", timeout=WAIT_MS)
    n_recv = received(pg)
    pg.wait_for_function(
        "n => +document.querySelector('[data-stat=in] dd').textContent.replace(/,/g, '') >= n",
        arg=n_recv - pg.eval_on_selector_all("#stream-table tr[data-chef=SystemStatusChef]",
                                             "e => e.length"), timeout=WAIT_MS)

    # The live stream ----------------------------------------------------------------------
    # Everything received is listed (the list is capped at 500 rows).
    pg.wait_for_function(
        "() => document.querySelectorAll('#stream-table tr[data-id]').length === "
        "Math.min(500, window.netdumplings.received)", timeout=WAIT_MS)
    rows = stream_rows(pg)
    chefs_seen = {r["chef"] for r in rows}
    assert {"Http1Chef", "DNSLookupChef", "ZmtpChef", "ARPChef", "FluentdForwardChef",
            "GrpcChef", "SystemStatusChef"} <= chefs_seen

    # The filter language, typed as a person would: the hub's share becomes the data
    # lane's subscription, the page shows which part runs where.
    set_filter(pg, "chef == DNSLookupChef")
    pg.wait_for_function("() => [...document.querySelectorAll('#stream-table tr[data-id]')]"
                         ".every(r => r.dataset.chef === 'DNSLookupChef')", timeout=WAIT_MS)
    assert pg.evaluate("window.netdumplings.subscription") == {"chefs": ["DNSLookupChef"]}
    assert pg.get_attribute("#filter-where", "data-hub") == "chef == DNSLookupChef"
    dns_rows = stream_rows(pg)
    # One per lookup plus the chef's end-of-file interval summary.
    assert sum("dumplings.example" in r["summary"] for r in dns_rows) == \
        dexp["counts"]["queries"]
    assert "filter=chef" in pg.url
    set_filter(pg, "kitchen == k-zmtp")
    pg.wait_for_function("() => [...document.querySelectorAll('#stream-table tr[data-id]')]"
                         ".every(r => r.dataset.kitchen === 'k-zmtp')", timeout=WAIT_MS)
    assert len(stream_rows(pg)) == 10  # greetings, READYs, 5 messages, close
    # Free text: one HTTP request.
    set_filter(pg, '"no-such-dish"')
    pg.wait_for_function("() => document.querySelectorAll('#stream-table tr[data-id]')"
                         ".length === 1", timeout=WAIT_MS)
    only = stream_rows(pg)[0]
    assert only["chef"] == "Http1Chef" and "GET /no-such-dish -> 404" in only["summary"]

    # Its detail, beside the list: the JSON tab holds the dumpling.
    pg.click("#stream-table tr[data-id]")
    pg.wait_for_selector("#detail:not([hidden])", timeout=WAIT_MS)
    pg.click("#detail [role=tab][data-tab=json]")
    shown = json.loads(pg.text_content("#detail-json"))
    assert shown["metadata"]["chef"] == "Http1Chef" and shown["metadata"]["kitchen"] == "k-http"
    assert shown["payload"]["path"] == "/no-such-dish" and shown["payload"]["status"] == 404
    assert pg.eval_on_selector_all("#detail-json span.k", "e => e.length") > 10
    pg.click("#detail [role=tab][data-tab=decoded]")
    pg.click("#detail-close")
    pg.wait_for_selector("#detail", state="hidden", timeout=WAIT_MS)

    # Pause freezes every panel: new dumplings are counted, nothing on screen moves;
    # resume shows them.
    set_filter(pg, "chef == Http1Chef")
    pg.wait_for_function("() => document.querySelectorAll('#stream-table tr[data-id]')"
                         ".length === 5", timeout=WAIT_MS)
    before = stream_rows(pg)
    assert {r["chef"] for r in before} == {"Http1Chef"}
    http_before = table(pg, "http-table")
    pg.click("#pause")
    assert pg.get_attribute("#pause", "aria-pressed") == "true"
    stack.replay("http1-redirect.pcap", "Http1Chef", kitchen="k-http2")
    n_redirect = len([x for c in expected("http1-redirect.pcap")["connections"]
                      for x in c["exchanges"]])
    pg.wait_for_function("n => +document.getElementById('paused-badge').dataset.waiting >= n",
                         arg=n_redirect, timeout=WAIT_MS)
    time.sleep(0.5)  # several render cycles
    assert stream_rows(pg) == before
    assert table(pg, "http-table") == http_before
    pg.click("#pause")
    pg.wait_for_function(f"() => document.querySelectorAll('#stream-table tr[data-id]')"
                         f".length === {5 + n_redirect}", timeout=WAIT_MS)
    assert pg.is_hidden("#paused-badge")
    assert {r["kitchen"] for r in stream_rows(pg)} == {"k-http", "k-http2"}
    # The filter applies to the protocol tables too: only HTTP/1.1 now.
    wait_rows(pg, "#http-table tbody", 5 + n_redirect)
    assert {r[1] for r in table(pg, "http-table")} == {"HTTP/1.1"}
    pg.click("#filter-clear")
    pg.wait_for_function("() => document.querySelectorAll('#stream-table tr[data-id]').length"
                         " > 20", timeout=WAIT_MS)
    assert pg.evaluate("window.netdumplings.subscription") == {}

    if bursts is not None:
        pg.wait_for_function("() => +document.getElementById('packets-chart').dataset.samples"
                             " >= 6", timeout=WAIT_MS)
        sent = bursts.stop()
        udp_total = "+document.querySelector('#packets-legend li[data-layer=UDP]').dataset.total"
        try:
            pg.wait_for_function(f"n => {udp_total} >= n", arg=sent, timeout=WAIT_MS)
        finally:
            assert pg.evaluate(udp_total) == sent

        # The legend switches a layer off and on again.
        pg.click("#packets-legend li[data-layer=Raw]")
        pg.wait_for_selector("#packets-legend li.off[data-layer=Raw]", timeout=WAIT_MS)
        pg.click("#packets-legend li[data-layer=Raw]")
        pg.wait_for_selector("#packets-legend li:not(.off)[data-layer=Raw]", timeout=WAIT_MS)

    ARTIFACTS.mkdir(exist_ok=True)
    pg.evaluate("window.scrollTo(0, 0)")
    time.sleep(0.3)
    pg.screenshot(path=str(ARTIFACTS / "web-dashboard.png"), full_page=True)
    assert (ARTIFACTS / "web-dashboard.png").stat().st_size > 50_000


def arp_spoof_pcap(path: Path) -> None:
    """A and B talk; then C claims B's address: the change the ARP panel must flag."""
    from scapy.layers.l2 import ARP, Ether
    from scapy.utils import wrpcap

    a_mac, b_mac, c_mac = "02:00:00:5e:00:a1", "02:00:00:5e:00:b2", "02:00:00:5e:00:c3"
    a_ip, b_ip = "198.51.100.1", "198.51.100.2"
    pkts = [
        Ether(src=a_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=a_mac, psrc=a_ip, pdst=b_ip),
        Ether(src=b_mac, dst=a_mac) / ARP(op=2, hwsrc=b_mac, psrc=b_ip, hwdst=a_mac, pdst=a_ip),
        Ether(src=c_mac, dst=a_mac) / ARP(op=2, hwsrc=c_mac, psrc=b_ip, hwdst=a_mac, pdst=a_ip),
    ]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i
    wrpcap(str(path), pkts)


def test_arp_change_alert(stack: Stack, page: Any) -> None:
    pcap = stack.tmp / "arp-spoof.pcap"
    arp_spoof_pcap(pcap)
    stack.replay("arp-spoof.pcap", "ARPChef", kitchen="k-lan", path=pcap)
    page.wait_for_selector("#arp-alerts li", timeout=WAIT_MS)
    alerts = page.eval_on_selector_all("#arp-alerts li", "els => els.map(e => e.textContent)")
    # The packet dumpling and the interval table report the same change: shown once.
    assert len(alerts) == 1
    assert "198.51.100.2 moved from 02:00:00:5e:00:b2 to 02:00:00:5e:00:c3" in alerts[0]
    assert "possible ARP spoofing" in alerts[0]
    row = {r[0]: r for r in table(page, "arp-table")}["198.51.100.2"]
    assert row[1] == "02:00:00:5e:00:c3" and row[4].startswith("1 (was 02:00:00:5e:00:b2")
    assert page.get_attribute("#arp-table tr[data-ip='198.51.100.2']", "data-changed") == "yes"


def test_reconnects_after_hub_restart(stack: Stack, page: Any) -> None:
    stack.replay("dns-queries.pcap", "DNSLookupChef", kitchen="before")
    wait_rows(page, "#dns-table tbody", 6)
    stack.stop_hub()
    page.wait_for_function("() => document.getElementById('conn').dataset.state === "
                           "'disconnected'", timeout=WAIT_MS)
    assert "retrying in" in page.text_content("#conn-text")
    time.sleep(1.5)  # a retry or two against a closed port
    assert page.get_attribute("#conn", "data-state") in ("disconnected", "connecting")
    stack.start_hub()
    wait_connected(page, connects=2)
    stack.replay("http1-keepalive.pcap", "Http1Chef", kitchen="after")
    wait_rows(page, "#http-table tbody", 5)
    # What came before the restart is still on the page.
    assert len(table(page, "dns-table")) == 6
    kitchens = {r["kitchen"] for r in stream_rows(page)}
    assert {"before", "after"} <= kitchens


def flood(in_port: int, total: int, batch: int = 500) -> None:
    """A kitchen that sends ``total`` small dumplings as fast as the hub takes them."""
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{in_port}", max_size=None) as ws:
        ws.send(json.dumps({"kitchen_name": "flood", "chefs": ["FloodChef"],
                            "protocol": "netdumplings/1", "batch": True}))
        welcome = json.loads(ws.recv(timeout=5))
        assert welcome["welcome"] == "netdumplings"
        now = time.time()
        messages = 0
        for start in range(0, total, batch):
            items = [{"metadata": {"chef": "FloodChef", "kitchen": "flood",
                                   "creation_time": now, "driver": "packet",
                                   "sequence": i + 1},
                      "payload": {"n": i + 1, "summary": f"flood dumpling {i + 1}"}}
                     for i in range(start, min(total, start + batch))]
            ws.send(json.dumps(items))
            messages += 1
        # The hub acks the messages it took; wait until it has all of them, then leave.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                msg = json.loads(ws.recv(timeout=1))
            except TimeoutError:
                continue
            if isinstance(msg, dict) and msg.get("ack", 0) >= messages:
                break


def send_dumplings(in_port: int, payloads: list[tuple[str, Any]]) -> None:
    """A hand-made kitchen: one dumpling per (chef, payload), then wait for the hub's ack."""
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{in_port}") as ws:
        ws.send(json.dumps({"kitchen_name": "odd", "protocol": "netdumplings/1"}))
        assert json.loads(ws.recv(timeout=5))["welcome"] == "netdumplings"
        for i, (chef, payload) in enumerate(payloads):
            ws.send(json.dumps({"metadata": {"chef": chef, "kitchen": "odd",
                                             "creation_time": time.time(),
                                             "driver": "packet", "sequence": i + 1},
                                "payload": payload}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv(timeout=5))
            if isinstance(msg, dict) and msg.get("ack", 0) >= len(payloads):
                return
        raise AssertionError("the hub did not take the dumplings")


def test_payloads_are_shown_as_text_and_odd_ones_do_not_break_the_page(
        stack: Stack, page: Any) -> None:
    evil = "<img src=x onerror=\"window.pwned=1\">"
    send_dumplings(stack.in_port, [
        ("Http1Chef", {"method": "<b>GET</b>", "path": evil, "status": 200, "reason": "OK",
                       "latency": 0.002, "summary": f"<script>window.pwned=1</script> {evil}"}),
        ("DNSLookupChef", {"name": evil, "type": "A", "rcode": "NOERROR",
                           "answers": [{"type": "A", "data": "<i>x</i>"}]}),
        ("FluentdForwardChef", {"tag": evil, "events": [{"record": {"k": evil}}]}),
        ("ZmtpChef", {"type": "message", "direction": "client_to_server", "src": evil}),
        ("ARPChef", {"sender_ip": "192.0.2.1", "sender_mac": evil}),
        ("PacketCountChef", {"packet_counts": {evil: 1, "IP": "many"}}),
        # Payloads the panels do not expect at all.
        ("Http1Chef", None), ("ZmtpChef", [1, 2, 3]), ("ARPChef", "just text"),
        ("GrpcChef", {"grpc_status": "zero"}), ("DNSLookupChef", {"answers": 5, "name": 7}),
        ("SomeoneElsesChef", {"deep": {"er": [1, {"x": None}]}}),
    ])
    page.wait_for_function("() => window.netdumplings.received >= 12", timeout=WAIT_MS)
    wait_rows(page, "#http-table tbody", 1)
    wait_rows(page, "#arp-table tbody", 1)
    assert page.evaluate("window.pwned") is None
    # No element came from a payload: table cells hold text only.
    for sel in ("main img", "main script", "main i", "main td *", "#arp-alerts li *"):
        assert page.eval_on_selector_all(sel, "e => e.length") == 0, sel
    http = table(page, "http-table")
    assert len(http) == 2  # the hostile HTTP/1 one and the gRPC one with a bad status
    assert [r[2:5] for r in http if r[1] == "HTTP/1"] == [["<b>GET</b>", evil, "200 OK"]]
    assert [r[2:5] for r in http if r[1] == "gRPC"] == [["-", "-", "-"]]
    assert any(evil in r[1] for r in table(page, "dns-table"))
    assert {r[0] for r in table(page, "fluentd-table")} == {evil}
    assert table(page, "arp-table")[0][1] == evil
    summaries = [r["summary"] for r in stream_rows(page)]
    assert any(x.startswith("<script>") for x in summaries)
    assert any('"deep"' in x for x in summaries)
    # The JSON view of the hostile one is text too.
    page.click("#stream-table tr[data-chef=Http1Chef] >> nth=-1")
    page.wait_for_selector("#detail:not([hidden])", timeout=WAIT_MS)
    page.click("#detail [role=tab][data-tab=json]")
    assert json.loads(page.text_content("#detail-json"))["payload"]["path"] == evil
    assert page.eval_on_selector_all("#detail img", "e => e.length") == 0
    assert page.evaluate("window.pwned") is None


def test_many_dumplings_stay_responsive(stack: Stack, page: Any) -> None:
    total = 30_000
    t = threading.Thread(target=flood, args=(stack.in_port, total), daemon=True)
    t.start()
    # While the flood arrives the page still answers quickly.
    worst = 0.0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        done = page.evaluate("() => document.querySelector('#stream-table "
                             "tr[data-chef=FloodChef]')?.cells[3].textContent")
        worst = max(worst, time.monotonic() - t0)
        if done == f"flood dumpling {total}":
            break
        time.sleep(0.1)
    t.join(30)
    assert worst < 2.0, f"the page took {worst:.2f}s to answer during the flood"
    # The newest flood dumpling is on top of a capped list (500 rows; 100 while more
    # than 1,000 dumplings/s arrive, and the page says how many it kept without a row).
    assert done == f"flood dumpling {total}"
    assert 100 <= page.eval_on_selector_all("#stream-table tr[data-id]", "e => e.length") <= 500
    assert "without a row" in page.text_content("#stream-note")
    # Every dumpling was either shown (counted) or reported missed by the hub.
    page.wait_for_function(
        "n => window.netdumplings.chefCount('FloodChef') + window.netdumplings.missed >= n",
        arg=total, timeout=WAIT_MS)
    missed = int(page.text_content("#missed-total").replace(",", ""))
    assert received_flood(page) + missed == total


def received_flood(page: Any) -> int:
    """How many FloodChef dumplings the page counted."""
    return page.evaluate("window.netdumplings.chefCount('FloodChef')")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")


@needs_root
def test_packet_rates_from_a_live_kitchen(stack: Stack, page: Any) -> None:
    """PacketCountChef on lo while UDP datagrams go out at a known pace: the chart's UDP
    rate and total follow what was sent."""
    port = free_port(socket.SOCK_DGRAM)
    kitchen = stack.spawn(nd_command("nd-sniff") + [
        "-i", "lo", "-f", f"udp port {port}", "-c", "PacketCountChef", "-p", "0.5",
        "--hub", f"127.0.0.1:{stack.in_port}", "-n", "k-live"])
    page.wait_for_function(
        "() => document.querySelector('#hub-kitchens tr[data-kitchen=k-live]')",
        timeout=WAIT_MS)
    wait_live_kitchen(page, "k-live")
    # Bursts with quiet gaps: the kitchen pokes its interval chefs when the wire is idle.
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(5):
            for _ in range(100):
                s.sendto(b"dumpling", ("127.0.0.1", port))
                sent += 1
            time.sleep(0.8)
    page.wait_for_function(
        "n => +(document.querySelector('#packets-legend li[data-layer=UDP]') || "
        "{dataset: {}}).dataset.total >= n", arg=sent, timeout=WAIT_MS)
    total = int(page.get_attribute("#packets-legend li[data-layer=UDP]", "data-total"))
    assert total == sent
    assert int(page.get_attribute("#packets-chart", "data-samples")) >= 3
    # 100 datagrams per ~0.8 s: no sample can be far above 100 / 0.3 s (the shortest
    # poke spacing), and the bursts make some clearly non-zero.
    rates = page.evaluate("() => window.netdumplings.rates('UDP')")
    assert rates and max(rates) > 50 and max(rates) < 100 / 0.3, rates
    assert kitchen.p.poll() is None
