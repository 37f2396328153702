"""The dashboard as an analyst's tool (issue 21), in a real browser, used as a person would.

Same set-up as test_web.py: a real nd-hub, nd-web, Debian's Chromium driven by Playwright,
real kitchens (nd-sniff -r) replaying the test captures. Each feature is reached by
typing, clicking and the keyboard; the checks compare with the captures' ground truth.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import DATA, expected, free_port, nd_command
from test_web import (ARTIFACTS, WAIT_MS, Stack, browser, page, set_filter,  # noqa: F401
                      stack, stream_rows, table, wait_connected, wait_rows)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def rows_now(pg: Any) -> int:
    return pg.eval_on_selector_all("#stream-table tr[data-id]", "e => e.length")


def wait_count(pg: Any, n: int) -> None:
    pg.wait_for_function("n => document.querySelectorAll('#stream-table tr[data-id]').length"
                         " === n", arg=n, timeout=WAIT_MS)


# -- 1. the filter language ---------------------------------------------------------------


def test_filter_language_typed_in_the_page(stack: Stack, page: Any) -> None:
    pg = page
    stack.replay("http1-keepalive.pcap", "Http1Chef", kitchen="k-http")
    stack.replay("dns-queries.pcap", "DNSLookupChef", kitchen="k-dns")
    exp = expected("http1-keepalive.pcap")
    dexp = expected("dns-queries.pcap")
    wait_rows(pg, "#http-table tbody", 5)
    wait_rows(pg, "#dns-table tbody", dexp["counts"]["queries"])

    # status>=400 used to find nothing: it finds the one 404, in the list and the table.
    set_filter(pg, "status>=400")
    wait_count(pg, 1)
    assert "404" in stream_rows(pg)[0]["summary"]
    wait_rows(pg, "#http-table tbody", 1)
    assert [r[4] for r in table(pg, "http-table")] == ["404 Not Found"]
    # Nothing of it can run on the hub: it says so.
    assert pg.get_attribute("#filter-where", "data-hub") == ""
    assert pg.get_attribute("#filter-where", "data-page") == "status >= 400"
    assert pg.evaluate("window.netdumplings.subscription") == {}

    # The hub's share goes into the subscription; the rest runs in the page.
    connects = pg.evaluate("window.netdumplings.connects")
    set_filter(pg, 'chef == "Http1Chef" and status >= 400')
    wait_connected(pg, connects + 1)   # the data lane said hello again
    assert pg.evaluate("window.netdumplings.subscription") == {"chefs": ["Http1Chef"]}
    assert pg.get_attribute("#filter-where", "data-hub") == 'chef == "Http1Chef"'
    assert pg.get_attribute("#filter-where", "data-page") == "status >= 400"
    assert "hub: chef" in pg.text_content("#filter-where")
    wait_count(pg, 1)
    # ... so DNS dumplings no longer cross the network to this page at all.
    dns_before = pg.evaluate("window.netdumplings.chefCount('DNSLookupChef')")
    http_before = pg.evaluate("window.netdumplings.chefCount('Http1Chef')")
    stack.replay("dns-queries.pcap", "DNSLookupChef", kitchen="k-dns2")
    stack.replay("http1-keepalive.pcap", "Http1Chef", kitchen="k-http2")
    pg.wait_for_function("n => window.netdumplings.chefCount('Http1Chef') >= n",
                         arg=http_before + 5, timeout=WAIT_MS)
    assert pg.evaluate("window.netdumplings.chefCount('DNSLookupChef')") == dns_before
    wait_count(pg, 2)   # the 404 of each replay

    # ip.addr: the client or the server of the transactions.
    server_ip = exp["connections"][0]["server"].rsplit(":", 1)[0]
    set_filter(pg, f"ip.addr == {server_ip} and chef == Http1Chef")
    wait_count(pg, 10)
    set_filter(pg, "ip.addr == 192.0.2.254")
    wait_count(pg, 0)
    # Latency with a unit: every transaction of the loopback capture is under 50 ms.
    set_filter(pg, "chef == Http1Chef and latency < 50ms")
    wait_count(pg, 10)
    set_filter(pg, "chef == Http1Chef and latency > 50ms")
    wait_count(pg, 0)
    # A regular expression on a field, and negation (DNS again: the subscription is gone).
    set_filter(pg, 'name ~ "example"')
    wait_count(pg, dexp["counts"]["queries"])
    assert {r["chef"] for r in stream_rows(pg)} == {"DNSLookupChef"}
    set_filter(pg, "not chef in {Http1Chef, SystemStatusChef, DNSLookupChef}")
    wait_count(pg, 0)

    # A mistake is shown where it is typed, marked, and the last good filter stays.
    pg.fill("#filter", "")
    pg.type("#filter", "status >= big")
    pg.wait_for_selector("#filter-error:not([hidden])", timeout=WAIT_MS)
    assert pg.get_attribute("#filter", "aria-invalid") == "true"
    assert pg.text_content("#filter-error mark") == "big"
    assert "compares numbers" in pg.text_content("#filter-error")
    assert rows_now(pg) == 0
    assert "filter=not" in pg.url
    pg.fill("#filter", "")
    pg.type("#filter", "(chef == Http1Chef")
    pg.press("#filter", "Enter")
    pg.wait_for_function("() => document.getElementById('filter-error').textContent"
                         ".includes(\"expected ')'\")", timeout=WAIT_MS)
    pg.fill("#filter", "")
    pg.type("#filter", "method == GET")
    pg.wait_for_selector("#filter-error", state="hidden", timeout=WAIT_MS)
    # Typing checks; Enter (or Apply) applies.
    assert "filter=not" in pg.url
    pg.click("#filter-form button[type=submit]")
    pg.wait_for_function("() => new URLSearchParams(location.search).get('filter') === "
                         "'method == GET'", timeout=WAIT_MS)

    # The filter lives in the URL: a reload (or a shared link) comes back with it.
    pg.goto(stack.url + "?filter=" + "chef%20%3D%3D%20Http1Chef%20and%20status%20%3D%3D%20404")
    wait_connected(pg)
    assert pg.input_value("#filter") == "chef == Http1Chef and status == 404"
    assert pg.evaluate("window.netdumplings.subscription") == {"chefs": ["Http1Chef"]}
    stack.replay("http1-keepalive.pcap", "Http1Chef", "DNSLookupChef", kitchen="k-http3")
    wait_count(pg, 1)
    assert pg.evaluate("window.netdumplings.chefCount('DNSLookupChef')") == 0


# -- 2. the detail pane --------------------------------------------------------------------


def test_detail_pane_beside_the_list(stack: Stack, page: Any) -> None:
    pg = page
    stack.replay("http1-keepalive.pcap", "Http1Chef", kitchen="k-http")
    stack.replay("http2-h2c.pcap", "Http2Chef", kitchen="k-h2")
    stack.replay("grpc-calls.pcap", "GrpcChef", kitchen="k-grpc")
    pg.wait_for_function("() => document.querySelectorAll('#http-table tr[data-proto=gRPC]')"
                         ".length >= 3 && document.querySelectorAll("
                         "'#http-table tr[data-proto=\"HTTP/2\"]').length >= 1",
                         timeout=WAIT_MS)

    # HTTP/1.1: the 404, request and response side by side, beside the list (no modal).
    pg.click("#http-table tr[data-proto='HTTP/1.1']:has(td.status.warn)")
    pg.wait_for_selector("#detail:not([hidden])", timeout=WAIT_MS)
    assert pg.evaluate("document.querySelectorAll('dialog[open]').length") == 0
    list_box = pg.locator(".list-detail > .scroll").bounding_box()
    detail_box = pg.locator("#detail").bounding_box()
    assert detail_box["x"] > list_box["x"] + list_box["width"] - 5   # beside, on the right
    req = pg.text_content("#detail-request")
    resp = pg.text_content("#detail-response")
    assert "/no-such-dish" in req and "GET" in req and "request_headers" in req
    assert "404" in resp and "Not Found" in resp and "response_headers" in resp
    req_box = pg.locator("#detail-request").bounding_box()
    resp_box = pg.locator("#detail-response").bounding_box()
    assert abs(req_box["y"] - resp_box["y"]) < 2 and resp_box["x"] > req_box["x"]
    # Readable local times with the date (the capture is from another day).
    captured = pg.text_content("#detail [data-key=captured] dd")
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC[+-]\d\d:\d\d", captured)
    assert re.search(r"\d{4}-\d\d-\d\d", pg.text_content("#detail-decoded .leaf[data-key=timestamp]"))

    # Follow flow: the keep-alive connection's five transactions, the current one marked.
    pg.click("#detail [role=tab][data-tab=flow]")
    assert pg.eval_on_selector_all("#detail-flow li", "e => e.length") == 5
    assert pg.eval_on_selector_all("#detail-flow li.current", "e => e.length") == 1
    first = pg.locator("#detail-flow li").first
    first_id = first.get_attribute("data-id")
    first.click()
    pg.wait_for_function("id => document.getElementById('detail').dataset.id === id",
                         arg=first_id, timeout=WAIT_MS)
    # Where its packets are: a display filter that finds exactly this transaction's
    # packets in the capture (what a kitchen keeps with nd-sniff -w).
    pg.click("#detail [role=tab][data-tab=decoded]")
    pf = pg.get_attribute("#detail-packets", "data-filter")
    if shutil.which("tshark"):
        out = subprocess.run(["tshark", "-r", str(DATA / "http1-keepalive.pcap"), "-Y", pf,
                              "-T", "fields", "-e", "frame.number", "-e", "http.request.uri",
                              "-e", "http.response.code"], capture_output=True, text=True,
                             timeout=60, check=True).stdout.splitlines()
        assert out, pf
        fields = [line.split("\t") for line in out]
        uris = {f[1] for f in fields if len(f) > 1 and f[1]}
        shown = pg.evaluate("JSON.parse(document.getElementById('detail-json').textContent)"
                            ".payload")
        assert uris == {shown["path"]}, (pf, out)
        assert {f[2] for f in fields if len(f) > 2 and f[2]} == {str(shown["status"])}, out
    # Raw JSON on its tab.
    pg.click("#detail [role=tab][data-tab=json]")
    assert json.loads(pg.text_content("#detail-json"))["payload"]["flow"]["server"] == \
        expected("http1-keepalive.pcap")["connections"][0]["server"]

    # HTTP/2 and gRPC get the same two halves.
    pg.click("#detail [role=tab][data-tab=decoded]")
    for proto, want_req, want_resp in (("HTTP/2", "method", "status"),
                                       ("gRPC", "service", "grpc_status")):
        pg.click(f"#http-table tr[data-proto='{proto}'] >> nth=0")
        pg.wait_for_function("p => document.getElementById('detail-title').textContent"
                             ".startsWith(p)", arg="Http2Chef" if proto == "HTTP/2" else "GrpcChef",
                             timeout=WAIT_MS)
        assert want_req in pg.text_content("#detail-request")
        assert want_resp in pg.text_content("#detail-response")

    # The keyboard: Tab to a row, arrows to move, Enter to open; every protocol table.
    pg.focus("#http-table tbody tr >> nth=0")
    pg.keyboard.press("ArrowDown")
    focused = pg.evaluate("document.activeElement.rowIndex")
    assert focused == 2   # header row is 0
    pg.keyboard.press("Enter")
    want = pg.evaluate("document.activeElement.cells[3].textContent")
    pg.wait_for_function("() => document.querySelector('#http-table tr.selected')",
                         timeout=WAIT_MS)
    assert pg.evaluate("document.querySelector('#http-table tr.selected').cells[3]"
                       ".textContent") == want
    for tid in ("stream-table", "http-table"):
        assert pg.evaluate(f"[...document.querySelectorAll('#{tid} tbody tr[data-id], "
                           f"#{tid} tbody tr.openable')].every(r => r.tabIndex === 0)")
    pg.click("#detail-close")
    pg.wait_for_selector("#detail", state="hidden", timeout=WAIT_MS)


# -- 3. talkers, conversations, protocols -------------------------------------------------


def test_statistics_sort_and_filter_by_a_click(stack: Stack, page: Any) -> None:
    pg = page
    stack.replay("http1-keepalive.pcap", "Http1Chef", kitchen="k-http")
    stack.replay("dns-queries.pcap", "DNSLookupChef", kitchen="k-dns")
    dexp = expected("dns-queries.pcap")
    wait_rows(pg, "#dns-table tbody", dexp["counts"]["queries"])

    def stats_rows() -> list[list[str]]:
        return table(pg, "stats-table")

    # Every capture here is on loopback: one address, several conversations (by port).
    pg.wait_for_function("() => document.querySelectorAll('#stats-table tbody tr[data-filter]')"
                         ".length >= 1", timeout=WAIT_MS)
    eps = {r[0]: r for r in stats_rows()}
    assert set(eps) == {"127.0.0.1"}
    n_all = int(eps["127.0.0.1"][1].replace(",", ""))
    assert n_all == 5 + dexp["counts"]["queries"]   # transactions and lookups name endpoints
    # Sorted by dumplings, most first, by default; a click on the header turns it round.
    counts = [int(r[1].replace(",", "")) for r in stats_rows()]
    assert counts == sorted(counts, reverse=True)

    # Conversations: one per client port (the keep-alive connection, each DNS query's).
    pg.click("#stats-tabs [data-tab=conversations]")
    pg.wait_for_function("() => document.querySelector('#stats-table th button[data-sort=ab]')",
                         timeout=WAIT_MS)
    convs = stats_rows()
    http_server = expected("http1-keepalive.pcap")["connections"][0]["server"]
    http_conv = [r for r in convs if http_server in (r[0], r[1])]
    assert len(http_conv) == 1 and int(http_conv[0][2]) == 5
    counts = [int(r[2].replace(",", "")) for r in convs]
    assert counts == sorted(counts, reverse=True)
    pg.click("#stats-table th button[data-sort=n]")
    pg.wait_for_selector("#stats-table th[aria-sort=ascending]", timeout=WAIT_MS)
    counts = [int(r[2].replace(",", "")) for r in stats_rows()]
    assert counts == sorted(counts)

    # Protocols: dumplings per chef and latency percentiles.
    pg.click("#stats-tabs [data-tab=protocols]")
    pg.wait_for_function("() => document.querySelector('#stats-table th button[data-sort=p95]')",
                         timeout=WAIT_MS)
    prot = {r[0]: r for r in stats_rows()}
    assert int(prot["Http1Chef"][1]) == 5
    assert re.fullmatch(r"\d+(\.\d+)? ms", prot["Http1Chef"][5])
    assert re.fullmatch(r"\d+(\.\d+)? ms", prot["DNSLookupChef"][7])
    # A click on a row filters by it, as Wireshark's "apply as filter".
    pg.click("#stats-table tr[data-filter='chef == \"DNSLookupChef\"']")
    pg.wait_for_function("() => document.getElementById('filter').value === "
                         "'chef == \"DNSLookupChef\"'", timeout=WAIT_MS)
    pg.wait_for_function("() => [...document.querySelectorAll('#stream-table tr[data-id]')]"
                         ".every(r => r.dataset.chef === 'DNSLookupChef')", timeout=WAIT_MS)
    # Statistics follow the filter: only DNS now; and Enter on an endpoint narrows further.
    pg.wait_for_function("() => document.querySelectorAll('#stats-table tbody tr[data-filter]')"
                         ".length === 1", timeout=WAIT_MS)
    pg.click("#stats-tabs [data-tab=endpoints]")
    pg.wait_for_selector("#stats-table tbody tr[data-filter^='ip.addr']", timeout=WAIT_MS)
    pg.focus("#stats-table tbody tr >> nth=0")
    pg.keyboard.press("Enter")
    pg.wait_for_function("() => / and ip\\.addr == /.test(document.getElementById('filter').value)",
                         timeout=WAIT_MS)


# -- 5. export ---------------------------------------------------------------------------


def test_export_the_filtered_view(stack: Stack, page: Any, tmp_path: Path) -> None:
    pg = page
    stack.replay("http1-keepalive.pcap", "Http1Chef", kitchen="k-http")
    stack.replay("dns-queries.pcap", "DNSLookupChef", kitchen="k-dns")
    exp = expected("http1-keepalive.pcap")
    wait_rows(pg, "#http-table tbody", 5)
    set_filter(pg, "chef == Http1Chef")
    wait_count(pg, 5)

    def export(kind: str) -> str:
        with pg.expect_download() as dl:
            pg.click(f"#export button[data-export={kind}]")
        path = tmp_path / dl.value.suggested_filename
        dl.value.save_as(path)
        return path.read_text()

    lines = export("jsonl").splitlines()
    assert len(lines) == 5
    dumplings = [json.loads(x) for x in lines]
    assert {d["metadata"]["chef"] for d in dumplings} == {"Http1Chef"}

    rows = list(csv.reader(io.StringIO(export("csv"))))
    assert rows[0] == ["time", "kitchen", "chef", "src", "dst", "summary", "latency", "status"]
    assert len(rows) == 6 and {r[2] for r in rows[1:]} == {"Http1Chef"}
    assert sorted(r[7] for r in rows[1:]) == sorted(
        str(x["response"]["status"]) for c in exp["connections"] for x in c["exchanges"])

    har = json.loads(export("har"))
    entries = har["log"]["entries"]
    assert har["log"]["version"] == "1.2" and len(entries) == 5
    want = sorted((x["request"]["method"], x["request"]["target"], x["response"]["status"])
                  for c in exp["connections"] for x in c["exchanges"])
    got = sorted((e["request"]["method"], re.sub(r"^http://[^/]+", "", e["request"]["url"]),
                  e["response"]["status"]) for e in entries)
    assert got == want
    for e in entries:
        assert e["time"] >= 0 and e["request"]["httpVersion"] == "HTTP/1.1"
        assert e["startedDateTime"].endswith("Z")
        assert any(h["name"].lower() == "host" for h in e["request"]["headers"])


# -- 6. Channel Access, colours, layout ----------------------------------------------------


def test_channel_access_panel_and_stable_chef_colours(stack: Stack, page: Any) -> None:
    pg = page
    stack.replay("epics-ca.pcap", "ChannelAccessChef", kitchen="k-ca")
    cexp = expected("epics-ca.pcap")
    names = {p["name"] for p in cexp["pvs"]}
    pg.wait_for_function("n => document.querySelectorAll('#ca-table tr[data-pv]').length >= n",
                         arg=len(names), timeout=WAIT_MS)
    pvs = {r[0]: r for r in table(pg, "ca-table")}
    assert names <= set(pvs)
    for name in names:
        assert pvs[name][1] == f"127.0.0.1:{cexp['server_port']}", pvs[name]
        assert "SearchRequest" in pvs[name][3] or "CreateChan" in pvs[name][3], pvs[name]
    # A row opens its last dumpling in the detail pane.
    some = sorted(names)[0]
    pg.click(f"#ca-table tr[data-pv='{some}']")
    pg.wait_for_selector("#detail:not([hidden])", timeout=WAIT_MS)
    assert pg.text_content("#detail-title").startswith("ChannelAccessChef")
    # One colour per chef, the same in the list and the statistics, and after a reload.
    cls = pg.get_attribute("#stream-table tr[data-chef=ChannelAccessChef] td.chef >> nth=0",
                           "class")
    pg.click("#stats-tabs [data-tab=protocols]")
    pg.wait_for_selector("#stats-table td.chef", timeout=WAIT_MS)
    ca_stats = "#stats-table tr[data-filter='chef == \"ChannelAccessChef\"'] td.chef"
    assert pg.get_attribute(ca_stats, "class") == cls
    other = pg.get_attribute("#stream-table tr[data-chef=SystemStatusChef] td.chef >> nth=0",
                             "class")
    assert other != cls
    pg.reload()
    wait_connected(pg)
    stack.replay("epics-ca.pcap", "ChannelAccessChef", kitchen="k-ca2")
    pg.wait_for_selector("#stream-table tr[data-chef=ChannelAccessChef] td.chef", timeout=WAIT_MS)
    assert pg.get_attribute("#stream-table tr[data-chef=ChannelAccessChef] td.chef >> nth=0",
                            "class") == cls


def test_layout_fits_1440_and_a_390_phone(browser: Any, stack: Stack) -> None:  # noqa: F811
    stack.replay("http1-keepalive.pcap", "Http1Chef", "PacketCountChef", kitchen="k-http")
    stack.replay("epics-ca.pcap", "ChannelAccessChef", kitchen="k-ca")
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in ((1440, 1000), (390, 844)):
        ctx = browser.new_context(viewport={"width": width, "height": height},
                                  device_scale_factor=1, is_mobile=width < 500)
        pg = ctx.new_page()
        pg.goto(stack.url)
        wait_connected(pg)
        stack.replay("http1-keepalive.pcap", "Http1Chef", kitchen=f"k-{width}")
        wait_rows(pg, "#http-table tbody", 5)
        pg.click("#http-table tbody tr >> nth=0")
        pg.wait_for_selector("#detail:not([hidden])", timeout=WAIT_MS)
        pg.fill("#filter", "status >= ")
        pg.wait_for_selector("#filter-error:not([hidden])", timeout=WAIT_MS)
        time.sleep(0.5)
        over = pg.evaluate("() => document.documentElement.scrollWidth - "
                           "document.documentElement.clientWidth")
        assert over <= 0, f"{width} px: {over} px of sideways scrolling"
        # No element sticks out of the page on the right (tables scroll inside their box).
        wide = pg.evaluate("""w => [...document.querySelectorAll('body *')]
            .filter(e => e.closest('.scroll') === null && e.getBoundingClientRect().right > w + 1
                         && getComputedStyle(e).position !== 'fixed')
            .map(e => e.id || e.className || e.tagName).slice(0, 5)""", width)
        assert wide == [], f"{width} px: {wide}"
        pg.screenshot(path=str(ARTIFACTS / f"web-{width}.png"), full_page=True)
        ctx.close()


# -- 4. time, pause, behind; hub restart -----------------------------------------------------


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")


@needs_root
def test_chart_with_live_and_replayed_kitchens(stack: Stack, page: Any) -> None:
    """A live kitchen and a replay at once: the chart stays on the wall clock (the axis
    shows clock times, not "-96663630s") and names the replay it leaves off the axis."""
    pg = page
    port = free_port(socket.SOCK_DGRAM)
    stack.spawn(nd_command("nd-sniff") + [
        "-i", "lo", "-f", f"udp port {port}", "-c", "PacketCountChef", "-p", "0.5",
        "--hub", f"127.0.0.1:{stack.in_port}", "-n", "k-live"])
    pg.wait_for_selector("#stream-table tr[data-kitchen=k-live][data-chef=PacketCountChef]",
                         state="attached", timeout=WAIT_MS)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(4):
            for _ in range(50):
                s.sendto(b"x", ("127.0.0.1", port))
            time.sleep(0.7)
    stack.replay("http1-keepalive.pcap", "PacketCountChef", kitchen="k-replay")
    pg.wait_for_function("() => document.getElementById('packets-note').textContent"
                         ".includes('k-replay')", timeout=WAIT_MS)
    assert pg.get_attribute("#packets-chart", "data-clock") == "live"
    assert "live kitchens on the wall clock" in pg.text_content("#packets-note")
    # The replay's packets are in the totals even though it is not on the time axis.
    tcp = int(pg.get_attribute("#packets-legend li[data-layer=TCP]", "data-total"))
    assert tcp == expected("http1-keepalive.pcap")["capture"]["packets"]
    rates = pg.evaluate("() => window.netdumplings.rates('UDP')")
    assert rates and max(rates) < 1000, rates   # no spike from mixing clocks


def test_a_replay_of_a_fresh_capture_is_charted_on_its_capture_clock(stack: Stack,
                                                                     page: Any) -> None:
    """A file recorded a moment ago is read in a blink: its counts are made within
    milliseconds of wall-clock time but seconds apart in capture time. The chart must use
    the capture clock (20 packets a second), not show one spike."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    now = time.time() - 5
    pkts = []
    for i in range(200):                     # 20 packets/s for 10 s of capture time
        p = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
             / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=5000, dport=6000))
        p.time = now + i * 0.05
        pkts.append(p)
    pcap = stack.tmp / "fresh.pcap"
    wrpcap(str(pcap), pkts)
    stack.replay("fresh.pcap", "PacketCountChef", kitchen="k-fresh", path=pcap,
                 extra=("-p", "1"))
    page.wait_for_function("() => document.getElementById('packets-chart').dataset.clock "
                           "=== 'replay'", timeout=WAIT_MS)
    assert "replay k-fresh on its capture clock" in page.text_content("#packets-note")
    rates = page.evaluate("() => window.netdumplings.rates('UDP')")
    assert len(rates) >= 5, rates
    assert all(15 <= r <= 25 for r in rates[:-1]), rates   # the last poke may be partial


def test_time_cells_show_capture_time_with_date_and_wall_clock_on_hover(
        stack: Stack, page: Any) -> None:
    pg = page
    stack.replay("dns-queries.pcap", "DNSLookupChef", kitchen="k-dns")
    wait_rows(pg, "#stream-table tbody", 3)
    # The oldest DNS row is a lookup (the newest is the chef's end-of-file summary, made
    # on the kitchen's clock today).
    cell = pg.locator("#stream-table tr[data-chef=DNSLookupChef] td.time").last
    # The capture is from another day: the date is shown.
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", cell.text_content())
    title = cell.get_attribute("title")
    assert title.startswith("captured ") and "received here" in title
    assert "(local wall clock)" in title


def test_hub_restart_loses_nothing_the_kitchen_resends(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    """A live kitchen keeps what the hub has not acknowledged and resends it after a hub
    restart (nd-hub keeps it for its startup grace, and the page resumes from the hub it
    had, so it is given what came in before it was back): the page gets every
    dumpling exactly once, and counts its reconnection."""
    if os.geteuid() != 0:
        pytest.skip("live capture needs root")
    s = Stack(tmp_path)
    try:
        s.hub.terminate()
        s.start_hub_with = ["--startup-grace", "15"]
        _restart_hub(s)
        ctx = browser.new_context(viewport={"width": 1440, "height": 900})
        pg = ctx.new_page()
        pg.goto(s.url + "?filter=chef%20%3D%3D%20PacketForwardChef")
        wait_connected(pg)
        port = free_port(socket.SOCK_DGRAM)
        s.spawn(nd_command("nd-sniff") + [
            "-i", "lo", "-f", f"udp port {port}", "-c", "PacketForwardChef", "-p", "0.3",
            "--hub", f"127.0.0.1:{s.in_port}", "-n", "k-fwd"])
        time.sleep(2.0)   # the kitchen has joined and opened its capture

        def burst(n: int) -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for i in range(n):
                    sock.sendto(b"frame %d" % i, ("127.0.0.1", port))
                    time.sleep(0.002)

        burst(100)
        pg.wait_for_function("() => window.netdumplings.chefCount('PacketForwardChef') > 0",
                             timeout=WAIT_MS)
        s.hub.terminate()
        pg.wait_for_function("() => document.getElementById('conn').dataset.state !== "
                             "'connected'", timeout=WAIT_MS)
        burst(100)          # captured while the hub is down: the kitchen keeps them
        time.sleep(1.0)
        _restart_hub(s)
        wait_connected(pg, connects=2)
        burst(100)
        # Every frame arrives once: batches are numbered, frames counted by "first".
        pg.wait_for_function(
            """() => { const items = window.netdumplings.items('PacketForwardChef');
                       return items.reduce((a, p) => a + (p.packets || []).length, 0) >= 300; }""",
            timeout=30_000)
        batches = pg.evaluate("() => window.netdumplings.items('PacketForwardChef')"
                              ".map(p => [p.batch, p.first, (p.packets || []).length])")
        nums = sorted(b[0] for b in batches)
        assert nums == list(range(1, len(nums) + 1)), nums   # none missing, none twice
        frames = sorted((b[1], b[2]) for b in batches if b[2])
        at = frames[0][0]
        for first, n in frames:
            assert first == at, frames
            at += n
        assert at - frames[0][0] >= 300
        assert pg.evaluate("window.netdumplings.missed") == 0
        ctx.close()
    finally:
        s.close()


def _restart_hub(s: Stack) -> None:
    from conftest import Proc, wait_port
    s.hub = Proc(nd_command("nd-hub") + ["--in-port", str(s.in_port), "--out-port",
                                         str(s.out_port), "--status-freq", "0.5",
                                         *getattr(s, "start_hub_with", [])])
    wait_port(s.in_port)
    wait_port(s.out_port)


def test_behind_is_said_and_hub_status_has_its_own_lane(stack: Stack, page: Any) -> None:
    """Dumplings made 12 s before they reach the page: it says "behind by 12 s". The hub's
    status comes on a lane of its own: the page is two eaters, the status one subscribed to
    SystemStatusChef only, and the hub panel keeps moving with a filter on the data lane."""
    from websockets.sync.client import connect

    pg = page
    pg.wait_for_selector("#hub-eaters tr[data-eater='nd-web (status)']", timeout=WAIT_MS)
    assert pg.is_visible("#hub-eaters tr[data-eater=nd-web]")
    with connect(f"ws://127.0.0.1:{stack.in_port}") as ws:
        ws.send(json.dumps({"kitchen_name": "late", "protocol": "netdumplings/1"}))
        assert json.loads(ws.recv(timeout=5))["welcome"] == "netdumplings"
        old = time.time() - 12
        for i in range(5):
            ws.send(json.dumps({"metadata": {"chef": "LateChef", "kitchen": "late",
                                             "creation_time": old, "driver": "packet",
                                             "sequence": i + 1},
                                "payload": {"summary": f"late {i}"}}))
        pg.wait_for_selector("#behind:not([hidden])", timeout=WAIT_MS)
    seconds = float(pg.get_attribute("#behind", "data-seconds"))
    assert 11 < seconds < 20, seconds
    assert pg.text_content("#behind").startswith("behind by ")
    # With the data lane subscribed to one chef, hub status still arrives.
    set_filter(pg, "chef == LateChef")
    before = pg.text_content("#hub-stats [data-stat=uptime] dd")
    pg.wait_for_function("b => document.querySelector('#hub-stats [data-stat=uptime] dd')"
                         ".textContent !== b", arg=before, timeout=WAIT_MS)
