"""The web dashboard against hostile dumplings, floods of new names, a hub that wants an
eater token, and requests nd-web never serves.

Real nd-hub and nd-web processes on loopback, raw WebSocket kitchens (any bytes a kitchen
could be made to send by sniffed traffic), Debian's Chromium through Playwright."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from typing import Any, Iterator

import pytest

from conftest import Proc, free_port, nd_command, wait_port
from hub_helpers import cook_raw, dumpling
from test_web import CHROMIUM_ARGS, WAIT_MS, browser, nd_web_cmd  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
TOKEN = "eater-s3cret-6f1d"


class Pair:
    """nd-hub (optionally with an eater token) and nd-web (-vv: every request logged)."""

    def __init__(self, token: str | None = None) -> None:
        self.in_port, self.out_port, self.web_port = free_port(), free_port(), free_port()
        env = {"ND_EATER_TOKEN": token} if token else {}
        self.hub = Proc(nd_command("nd-hub") + ["--in-port", str(self.in_port), "--out-port",
                                                str(self.out_port), "--status-freq", "0.5",
                                                "-v"], env=env)
        wait_port(self.in_port)
        wait_port(self.out_port)
        self.web = Proc(nd_web_cmd() + ["--hub", f"127.0.0.1:{self.out_port}", "--port",
                                        str(self.web_port), "-vv"])
        self.web.wait_line("dashboard on", timeout=15)
        self.url = f"http://127.0.0.1:{self.web_port}/"

    def close(self) -> None:
        self.web.kill()
        self.hub.kill()


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair()
    yield p
    p.close()


def _dumpling(kitchen: Any, chef: str, seq: int, payload: Any) -> str:
    return json.dumps(dumpling(seq, chef=chef, kitchen=kitchen, payload=payload))


def _cook(port: int, name: str, dumplings: list[str]) -> None:
    """``cook_raw`` in a thread of its own (Playwright's sync API owns this one's loop)."""
    errors: list[BaseException] = []
    t = threading.Thread(target=lambda: _catch(errors, lambda: asyncio.run(
        cook_raw(port, name, dumplings))))
    t.start()
    t.join(60)
    assert not t.is_alive() and not errors, errors


def _catch(errors: list[BaseException], fn: Any) -> None:
    try:
        fn()
    except BaseException as exc:  # reported by the caller
        errors.append(exc)


def _open(browser: Any, url: str) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": 1600, "height": 1300})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("dialog", lambda d: (errors.append(f"dialog {d.message}"), d.dismiss()))
    pg.goto(url)
    return context, pg, errors


def _connected(pg: Any) -> None:
    pg.wait_for_function("() => window.netdumplings.state === 'connected'", timeout=WAIT_MS)


def _hostile() -> list[str]:
    big = "A" * 100_000
    payloads: list[tuple[Any, str, Any]] = [
        (XSS, XSS, {"summary": XSS}),
        ("k", "Http1Chef", {"method": XSS, "path": "javascript:alert(1)//" + XSS,
                            "status": XSS, "reason": XSS, "version": XSS,
                            "flow": {"server": XSS}, "latency": "x"}),
        ("k", "Http1Chef", {"method": 5, "path": {"a": [1]}, "status": 200}),
        ("k", "Http1Chef", {"method": "GET", "path": big, "status": 1e300}),
        ("k", "GrpcChef", {"method": XSS, "path": "\u202egnp.exe", "grpc_status": 14,
                           "grpc_status_name": XSS}),
        ("k", "DNSLookupChef", {"name": XSS, "type": XSS, "rcode": XSS,
                                "answers": [{"type": XSS, "data": XSS}, XSS, None, 5]}),
        ("k", "DNSLookupChef", {"name": {"x": 1}, "answers": "not a list"}),
        ("k", "FluentdForwardChef", {"tag": XSS, "mode": XSS, "event_count": "many",
                                     "events": [{"record": {XSS: XSS}}]}),
        ("k", "ZmtpChef", {"type": "command", "properties": {"Socket-Type": XSS},
                           "flow": {"id": XSS, "client": XSS, "server": XSS}}),
        ("k", "ZmtpChef", {"type": "greeting", "mechanism": XSS, "version": [XSS, 1]}),
        ("k", "ARPChef", {"sender_ip": XSS, "sender_mac": XSS,
                          "mac_change": {"ip": XSS, "old_mac": XSS, "new_mac": XSS}}),
        ("k", "ARPChef", {"arp_table": {XSS: {"mac": XSS, "previous_macs": [XSS]},
                                        "1.1.1.1": 5}, "changes": [{"ip": XSS}, 3]}),
        ("k", "ARPChef", {"sender_ip": "__proto__", "sender_mac": "constructor"}),
        ("k", "PacketCountChef", {"packet_counts": {XSS: 5, "__proto__": 7, "x": "y"}}),
        # a kitchen posing as the hub: neither the hub panel nor the missed counter
        ("k", "SystemStatusChef", {"dumpling_kitchens": [None, 5, {"info_from_kitchen": None}],
                                   "dumpling_eaters": [None], "hub_version": XSS}),
        ("k", "HubNoticeChef", {"missed": 12345}),
        ("k", "DeepChef", json.loads('{"a":' * 500 + "1" + "}" * 500)),
        ("k", "NullChef", None),
        ("k", "StrChef", XSS),
        ("k", "\ufffd\x00\x1b[31m", {"summary": "\u202eevil\u202c"}),
        ("__proto__", "toString", {"summary": "x"}),
    ]
    return [_dumpling(k, c, i, p) for i, (k, c, p) in enumerate(payloads, 1)]


def test_hostile_payloads_are_text_and_every_panel_still_draws(browser: Any,
                                                               pair: Pair) -> None:
    context, pg, errors = _open(browser, pair.url)
    _connected(pg)
    items = _hostile()
    _cook(pair.in_port, XSS, items)
    pg.wait_for_function(f"() => window.netdumplings.received >= {len(items)}",
                         timeout=WAIT_MS)
    # a malformed status (null kitchens) used to stop render() before the protocol panels
    for table, n in (("http-table", 4), ("dns-table", 2), ("fluentd-table", 1),
                     ("zmtp-table", 1), ("arp-table", 2)):
        pg.wait_for_function(
            "([t, n]) => document.querySelectorAll(`#${t} tbody tr:not(:has(td.empty))`)"
            ".length >= n", arg=[table, n], timeout=WAIT_MS)
    # every dumpling's JSON view too
    n = pg.evaluate("() => document.querySelectorAll('#stream-table tbody tr[data-id]').length")
    for i in range(n):
        pg.evaluate("(i) => document.querySelectorAll('#stream-table tbody tr[data-id]')[i]"
                    ".cells[0].click()", i)
        pg.evaluate("() => document.getElementById('detail-close').click()")
    time.sleep(0.3)
    assert pg.evaluate("() => window.__xss") is None
    assert pg.evaluate("() => document.querySelectorAll('img, script:not([src]), a').length") == 0
    assert XSS in pg.inner_text("#http-table")          # shown, as text
    assert "<img" not in pg.inner_text("#hub-version")   # the real hub's status only
    assert pg.evaluate("() => document.getElementById('missed-wrap').hidden")
    assert errors == []
    context.close()


def _flood(n: int) -> list[str]:
    r = random.Random(7)
    out = []
    for i in range(n):
        v = r.random()
        kind = i % 4
        if kind == 0:
            out.append(_dumpling(f"k{v}", f"Chef{v}", i, {"summary": "x" * 100}))
        elif kind == 1:
            out.append(_dumpling("k", "FluentdForwardChef", i,
                                 {"tag": f"t{v}", "mode": f"m{v}", "events": [{"record": {}}]}))
        elif kind == 2:
            out.append(_dumpling("k", "ARPChef", i, {"sender_ip": f"10.{v}", "sender_mac": f"{v}",
                                                     "mac_change": {"ip": f"{v}"}}))
        else:
            out.append(_dumpling("k", "ZmtpChef", i, {"type": "message", "src": f"{v}",
                                                      "dst": "d"}))
    return out


def test_a_flood_of_new_names_keeps_the_page_bounded(browser: Any, pair: Pair) -> None:
    """Every sniffed name (kitchen, chef, Fluentd tag, ZMTP peer, ARP address) used to be
    kept for ever: traffic with ever-new names grew the tab without bound."""
    context, pg, errors = _open(browser, pair.url)
    _connected(pg)
    n = 24_000
    items = _flood(n)
    threads = [threading.Thread(target=_cook, args=(pair.in_port, f"f{j}", items[j::3]))
               for j in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    pg.wait_for_function(f"() => window.netdumplings.received >= {n}", timeout=30_000)
    t0 = time.monotonic()
    sizes = pg.evaluate("() => window.netdumplings.sizes()")
    assert time.monotonic() - t0 < 2.0          # responsive
    assert sizes["chefs"] <= 300 and sizes["kitchens"] <= 300, sizes
    for key in ("fluentd", "zmtp", "arp", "arpAlertKeys"):
        assert sizes[key] <= 1000, sizes
    assert sizes["stream"] <= 5000, sizes
    assert sizes["endpoints"] <= 1000 and sizes["conversations"] <= 1000, sizes
    assert pg.evaluate("() => document.querySelectorAll('tr').length") <= 2000
    assert errors == []
    context.close()


def test_hub_with_an_eater_token(browser: Any) -> None:
    """The page asks for the token when the hub refuses it, keeps it for the tab (never in
    a URL the server sees), also takes a #token= fragment and removes it at once."""
    p = Pair(token=TOKEN)
    try:
        context, pg, errors = _open(browser, p.url)
        pg.wait_for_selector("#token-form:not([hidden])", timeout=WAIT_MS)
        assert "needs an eater token" in pg.inner_text("#conn")
        time.sleep(1.5)   # no knocking on the hub again and again meanwhile
        refusals = sum("wrong or missing token" in line for line in p.hub.err)
        assert refusals <= 1, p.hub.err[-5:]
        pg.fill("#token-input", "wrong")
        pg.click("#token-form button")
        pg.wait_for_function("() => document.getElementById('conn-text').textContent"
                             ".includes('refused')", timeout=WAIT_MS)
        pg.fill("#token-input", TOKEN)
        pg.click("#token-form button")
        _connected(pg)
        assert pg.is_hidden("#token-form")
        pg.reload()          # the same tab keeps it
        _connected(pg)
        context.close()

        context, pg, errors2 = _open(browser, p.url + "#token=" + TOKEN)
        _connected(pg)
        assert TOKEN not in pg.url
        context.close()
        assert errors == [] and errors2 == []
        web_log = "\n".join(p.web.err)
        assert "GET /config.json" in web_log and TOKEN not in web_log
        assert TOKEN not in "\n".join(p.hub.err)
    finally:
        p.close()


def _raw(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return lines[0], headers, body


def test_nd_web_refuses_with_the_same_headers(procs: Any) -> None:
    port = free_port()
    web = procs(nd_web_cmd() + ["--hub", "127.0.0.1:1", "--port", str(port)])
    web.wait_line("dashboard on", timeout=15)
    for path in ("/../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd", "/./app.js",
                 "http://evil/../app.js%00", "/app.js%00.html", "*"):
        status, headers, _ = _raw(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                                        "Connection: close\r\n\r\n".encode())
        assert " 404 " in status, (path, status)
        assert headers["x-content-type-options"] == "nosniff"
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "TRACE"):
        status, headers, body = _raw(port, f"{method} / HTTP/1.1\r\nHost: x\r\n"
                                           "Content-Length: 0\r\n\r\n".encode())
        assert " 405 " in status and headers["allow"] == "GET, HEAD", (method, status)
        assert headers["content-type"].startswith("text/plain") and b"<" not in body
        assert "default-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
    status, headers, body = _raw(port, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
    assert " 414 " in status and headers["content-type"].startswith("text/plain")
    assert "content-security-policy" in headers and headers["server"] == "nd-web"
