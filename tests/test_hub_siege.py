"""The hub under attack and across restarts (issue 23): each test is a finding that was real
on the hub before, reproduced, and the bound that holds now. Memory is measured as the hub
process's RSS with generous bounds; the figures are printed (pytest -s)."""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import struct
import threading
import time

import msgpack
import orjson
import psutil
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import free_port
from test_hub_helpers import (HubThread, dumpling, frame, open_eater, open_kitchen, raw_ws,
                              read_close, recv_dumplings, start_hub_proc)
from netdumplings.hub import InvalidDumpling, MAX_LABEL_SETS, check_dumpling
from netdumplings.wire import PROTOCOL

pytestmark = pytest.mark.timeout(180)


class Peak(threading.Thread):
    """A process's RSS, sampled every 20 ms: ``start_mb`` and ``peak_mb``."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.start_mb = self.peak_mb = self.proc.memory_info().rss / 2**20
        self.stop = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak_mb = max(self.peak_mb, self.proc.memory_info().rss / 2**20)
            except psutil.Error:
                return
            time.sleep(0.02)

    def growth(self) -> float:
        self.stop.set()
        self.join(2)
        return self.peak_mb - self.start_mb


def ghost(port: int, name: str, close_frame: bool) -> None:
    """An eater that says hello and hangs up at once (with a close frame in the same
    segment, or by closing the TCP connection)."""
    s = raw_ws(port)
    data = frame(orjson.dumps({"eater_name": name, "protocol": PROTOCOL}))
    if close_frame:
        data += frame(struct.pack("!H", 1000), opcode=8)
    s.sendall(data)
    s.close()


def test_ghost_eaters_leave_no_trace():
    """An eater that hung up right after its hello stayed in the hub's eaters for good
    (the welcome was sent outside the cleanup): its queue grew with every dumpling and
    /healthz, status and metrics counted it as connected."""
    with HubThread() as h:
        for i in range(200):
            ghost(h.hub.out_port, f"ghost{i}", close_frame=i % 2 == 0)
        time.sleep(0.5)
        k, _ = open_kitchen(h.in_uri, batch=True)
        for first in range(1, 20_001, 500):
            k.send(orjson.dumps([dumpling(i, payload={"pad": "x" * 200})
                                 for i in range(first, first + 500)]))
        assert h.wait(lambda: not h.hub.eaters and h.hub.admitted["eater"] == 0
                      and h.hub.open["eater"] == 0), \
            h.call(lambda: (len(h.hub.eaters), h.hub.admitted, h.hub.open))
        st = h.status()
        assert st["dumpling_eater_count"] == 0
        assert h.call(lambda: h.hub.budget.used) == 0
        k.close()


def test_ghost_eaters_cost_no_memory_and_are_not_counted(procs):
    """The same, as the issue measured it: a hub process, ghosts, a kitchen streaming to a
    normal eater. Before: the ghosts' queues took the hub from 35 MB to 1.9 GB and /healthz
    and the metrics counted them as connected."""
    from test_hub_helpers import get_json, metric_samples
    metrics = free_port()
    hub, in_port, out_port = start_hub_proc(procs, "--metrics-port", str(metrics),
                                            "--status-freq", "0", "--startup-grace", "0")
    peak = Peak(hub.p.pid)
    for i in range(100):
        ghost(out_port, f"ghost{i}", close_frame=i % 2 == 0)
    normal, _ = open_eater(f"ws://127.0.0.1:{out_port}", "normal", batch=True, max_queue=None)
    k, _ = open_kitchen(f"ws://127.0.0.1:{in_port}", batch=True)
    n = 40_000
    got = 0
    for first in range(1, n + 1, 500):
        k.send(orjson.dumps([dumpling(i, payload={"pad": "x" * 300})
                             for i in range(first, first + 500)]))
        got += len(recv_dumplings(normal, 500, timeout=10))
    growth = peak.growth()
    health = get_json(f"http://127.0.0.1:{metrics}/healthz")
    conns = metric_samples(metrics, "netdumplings_hub_connections", ("role",))
    print(f"\n100 ghost eaters, {n} x 0.4 KB: hub RSS {peak.start_mb:.0f} -> peak "
          f"{peak.peak_mb:.0f} MB; /healthz says {health['eaters']} eater(s)")
    assert got == n
    assert health["eaters"] == 1 and conns[("eater",)] == 1
    assert growth < 60, f"hub RSS grew {growth:.0f} MB"   # before: ~500 MB here
    k.close()
    normal.close()


def test_status_dumplings_are_bounded():
    """Each eater's hello (up to 64 KB) was repeated in every status dumpling to every
    eater: 200 such eaters made a 12 MB status, sent to each of them every few seconds."""
    with HubThread() as h:
        eaters = [open_eater(h.out_uri, f"fat{i}", junk="j" * 50_000,
                             chefs=[f"c{n}" + "x" * 50 for n in range(100)])[0]
                  for i in range(200)]
        size = len(orjson.dumps(h.call(h.hub.status_dumpling)))
        full = h.call(lambda: h.hub.status(full=True))
        assert len(full["dumpling_eaters"]) == 200   # GET /status: everyone
        assert size < 256 << 10, size
        st = h.status()
        assert st["dumpling_eater_count"] == 200
        assert len(st["dumpling_eaters"]) <= 100
        assert st["dumpling_eaters_listed"] == len(st["dumpling_eaters"])
        e0 = st["dumpling_eaters"][0]["info_from_eater"]
        assert e0["eater_name"].startswith("fat") and "junk" not in e0
        print(f"\nstatus dumpling with 200 fat-hello eaters: {size / 1024:.0f} KB")
        for ws in eaters:
            ws.close()


def stalled_eater(port: int, name: str) -> socket.socket:
    """An eater that says hello and never reads (small receive buffer)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.close()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    import base64
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    s.sendall(frame(orjson.dumps({"eater_name": name, "protocol": PROTOCOL})))
    return s


@pytest.mark.slow
def test_non_reading_eaters_stay_within_the_budget_and_are_closed(procs):
    """Eaters that never read were never closed (a keepalive ping cannot be written into a
    full socket, and there was no write timeout) and each could hold its own 32 MB:
    100 of them took the hub to 1.2 GB. Now all queues share one budget and an eater that
    takes nothing for --write-timeout seconds is closed with 4107."""
    budget = 48
    hub, in_port, out_port = start_hub_proc(procs, "--max-memory-mb", str(budget),
                                            "--write-timeout", "3", "--status-freq", "0",
                                            "--startup-grace", "0")
    peak = Peak(hub.p.pid)
    stalled = [stalled_eater(out_port, f"stalled{i}") for i in range(60)]
    fast, _ = open_eater(f"ws://127.0.0.1:{out_port}", "fast", batch=True, max_queue=None)
    got: list[int] = []

    def collect() -> None:
        while len(got) < 60_000:
            try:
                obj = orjson.loads(fast.recv(timeout=20))
            except (TimeoutError, ConnectionClosed):
                return
            got.extend(d["metadata"]["sequence"] for d in obj if d["metadata"]["chef"] ==
                       "TestChef") if isinstance(obj, list) else got.append(
                obj["metadata"].get("sequence"))
    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    k, _ = open_kitchen(f"ws://127.0.0.1:{in_port}", batch=True)
    pad = "x" * 1000
    for first in range(1, 60_001, 500):
        k.send(orjson.dumps([dumpling(i, payload={"pad": pad})
                             for i in range(first, first + 500)]))
        time.sleep(0.005)
    reader.join(60)
    time.sleep(4)   # past the write timeout
    growth = peak.growth()
    codes = []
    for s in stalled:
        codes.append(read_close(s, timeout=5))
        s.close()
    time.sleep(1)
    after = peak.proc.memory_info().rss / 2**20
    print(f"\n60 non-reading eaters, 60k x 1.1 KB, budget {budget} MB: hub RSS "
          f"{peak.start_mb:.0f} -> peak {peak.peak_mb:.0f} MB, {after:.0f} MB once they "
          f"were closed; close codes {dict((c, codes.count(c)) for c in set(codes))}; "
          f"fast eater got {len(got)}")
    assert len(got) == 60_000
    assert codes.count(4107) >= 50, codes
    # The budget counts queue entries; sockets' buffers, the kitchen's messages being
    # decoded and the fast eater's merged frames come on top (typically ~30 MB here, once
    # 130 MB on a busy machine; before: 477 MB, and nothing was ever closed).
    assert growth < budget + 100, f"hub RSS grew {growth:.0f} MB (budget {budget} MB)"
    # ... and it goes back to the system once they are gone (before: kept for good).
    assert after - peak.start_mb < 30, f"{after:.0f} MB after the eaters left"
    k.close()
    fast.close()


def test_memory_before_authentication_is_bounded(procs):
    """The kitchen port read a hello of up to --max-message-mb (16 MB) before it looked at
    the token: 40 unauthenticated connections added 611 MB."""
    hub, in_port, out_port = start_hub_proc(procs, "--kitchen-token", "k-tok",
                                            "--status-freq", "0")
    peak = Peak(hub.p.pid)
    size = 16 << 20
    chunk = b"\0" * (1 << 20)
    socks = [raw_ws(in_port) for _ in range(40)]
    sent = [0] * len(socks)

    def push(i: int, s: socket.socket) -> None:
        mask = b"\0\0\0\0"
        try:
            s.sendall(bytes((0x81, 0x80 | 127)) + struct.pack("!Q", size) + mask)
            for _ in range(15):
                s.sendall(chunk)
                sent[i] += len(chunk)
        except OSError:
            pass
    threads = [threading.Thread(target=push, args=(i, s), daemon=True)
               for i, s in enumerate(socks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    time.sleep(0.5)
    growth = peak.growth()
    codes = [read_close(s, timeout=2) for s in socks]
    print(f"\n40 unfinished 16 MB kitchen hellos: hub RSS {peak.start_mb:.0f} -> peak "
          f"{peak.peak_mb:.0f} MB, {sum(sent) >> 20} MB pushed (discarded unread by the hub)")
    assert growth < 40, f"hub RSS grew {growth:.0f} MB"
    assert set(codes) <= {1009, None}
    for s in socks:
        s.close()
    # A real kitchen still gets in and may send big messages once admitted.
    k, welcome = open_kitchen(f"ws://127.0.0.1:{in_port}", "real", token="k-tok", batch=True)
    assert welcome["max_message_size"] == 16 << 20
    e, _ = open_eater(f"ws://127.0.0.1:{out_port}", "e")
    k.send(orjson.dumps([dumpling(i, payload={"pad": "y" * 1000}) for i in range(1, 300)]))
    assert len(recv_dumplings(e, 299)) == 299
    k.close()
    e.close()


@pytest.mark.slow
def test_hub_killed_ten_times_loses_nothing_for_a_connected_eater(procs):
    """What kitchens resent after a hub restart, before any eater was back, was relayed to
    nobody (35-43 % of 100k in 2 of 6 runs), with the kitchen seeing it acknowledged and
    no notice. With default settings an eater that was connected before the restart now
    gets everything (the hub's startup replay) or is told exactly how many it missed."""
    from netdumplings.eater import DumplingEater
    from netdumplings.sender import HubSender

    in_port, out_port = free_port(), free_port()
    hub, _, _ = start_hub_proc(procs, "--status-freq", "0", in_port=in_port,
                               out_port=out_port)
    seqs: set[int] = set()
    eater_ready = threading.Event()

    async def on_dumpling(d: dict) -> None:
        if d["metadata"]["chef"] == "TestChef":
            seqs.add(d["metadata"]["sequence"])

    async def on_connect(*_) -> None:
        eater_ready.set()

    eater = DumplingEater("loyal", f"127.0.0.1:{out_port}", reconnect=True, backoff_max=1.0,
                          on_dumpling=on_dumpling, on_connect=on_connect)
    et = threading.Thread(target=eater.run, daemon=True)
    et.start()
    assert eater_ready.wait(10)
    sender = HubSender("127.0.0.1", in_port, {"kitchen_name": "k1"}, backoff_max=1.0)
    sender.start()
    assert sender.connected.wait(10)
    made = 0
    rate = 5000
    start = time.monotonic()

    def produce_until(t: float) -> None:
        nonlocal made
        while time.monotonic() < t:
            due = int((time.monotonic() - start) * rate)
            while made < due:
                made += 1
                sender.put(orjson.dumps(dumpling(made, kitchen="k1", host="h")))
            time.sleep(0.005)
    for _ in range(10):
        produce_until(time.monotonic() + 1.5)
        os.kill(hub.p.pid, signal.SIGKILL)
        hub.p.wait(5)
        produce_until(time.monotonic() + 0.3)
        hub, _, _ = start_hub_proc(procs, "--status-freq", "0", in_port=in_port,
                                   out_port=out_port)
    produce_until(time.monotonic() + 2.0)
    assert sender.close(timeout=30)
    deadline = time.monotonic() + 30
    while len(seqs) + eater.missed < made and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    eater.stop()
    print(f"\nhub SIGKILLed 10x under {rate}/s: made {made}, eater got {len(seqs)} unique, "
          f"told of {eater.missed} missed, {eater.duplicates} duplicates dropped, kitchen "
          f"outbox dropped {sender.outbox.dropped_total}")
    assert sender.outbox.dropped_total == 0
    assert len(seqs) + eater.missed == made, (len(seqs), eater.missed, made)
    assert eater.missed == 0   # the defaults hold all of it: nothing lost at all
    assert seqs <= set(range(1, made + 1))


def test_startup_replay_and_restart_notice():
    """The parts of the restart fix, on one hub: a resuming eater in the grace gets what
    was kept (its subscription's part), a new eater only the live stream; after the grace a
    resuming eater is told exactly how many it wanted and missed (reason "restart")."""
    with HubThread(startup_grace=1.5) as h:
        probe, welcome = open_eater(h.out_uri, "probe")
        probe.close()
        assert len(welcome["instance"]) == 16
        k, _ = open_kitchen(h.in_uri, "k1", batch=True)
        k.send(orjson.dumps([dumpling(i, chef="A" if i % 2 else "B") for i in range(1, 101)]))
        k.send(orjson.dumps(dumpling(101, chef="A")))
        assert h.wait(lambda: h.hub.dumplings_in == 101)
        back, _ = open_eater(h.out_uri, "back", resume="old-hub", chefs=["A"],
                             encoding="msgpack")
        new, _ = open_eater(h.out_uri, "new")
        got = recv_dumplings(back, 51, decode=msgpack.unpackb)
        assert [d["metadata"]["sequence"] for d in got] == list(range(1, 102, 2))
        assert recv_dumplings(new, 1, timeout=0.5) == []
        time.sleep(1.6)   # the grace is over
        k.send(orjson.dumps([dumpling(i, chef="A" if i % 2 else "B")
                             for i in range(102, 122)]))
        assert h.wait(lambda: h.hub.dumplings_in == 121)
        late, _ = open_eater(h.out_uri, "late", resume="old-hub", chefs=["A"])
        same, _ = open_eater(h.out_uri, "same", resume=welcome["instance"])
        notice = recv_dumplings(late, 1, timeout=3)
        assert [n["payload"] for n in notice] == [
            {"notice": "missed", "missed": 61, "missed_total": 61, "queue_size": 100_000,
             "reason": "restart"}]
        assert recv_dumplings(same, 1, timeout=0.5) == []   # same hub: nothing to claim
        st = h.status()
        assert st["total_dumplings_unreplayable"] == 121 and st["startup_buffer_bytes"] == 0
        for ws in (back, new, late, same, k):
            ws.close()


def test_unauthenticated_connections_are_capped():
    """Connections that have not said hello are at most --max-unauthenticated per port
    (each may read up to a 64 KB hello): beyond, the oldest is closed."""
    with HubThread(max_unauthenticated=5, hello_timeout=30) as h:
        idle = [raw_ws(h.hub.in_port) for _ in range(12)]
        codes = [read_close(s, timeout=3) for s in idle[:7]]
        assert codes == [4104] * 7
        assert h.call(lambda: len(h.hub._pending["kitchen"])) == 5
        k, welcome = open_kitchen(h.in_uri, "real")
        assert welcome["role"] == "kitchen"
        for s in idle:
            s.close()
        k.close()


def _relay_seconds(out_uri: str, in_uri: str, n: int, chefs: list[str]) -> float:
    e, _ = open_eater(out_uri, "normal", batch=True, max_queue=None)
    k, _ = open_kitchen(in_uri, batch=True)
    t0 = time.monotonic()
    for first in range(1, n + 1, 500):
        k.send(orjson.dumps([dumpling(i, chef=chefs[i % len(chefs)])
                             for i in range(first, first + 500)]))
    got = len(recv_dumplings(e, n, timeout=60))
    elapsed = time.monotonic() - t0
    e.close()
    k.close()
    assert got == n
    return elapsed


def test_big_subscriptions_cost_o1_and_are_capped(procs):
    """Filters were checked by list membership once per dumpling per eater: 20 eaters with
    4,500-chef filters saturated the hub. Now they cost a set lookup, and a filter longer
    than the cap is refused with a reason that says so."""
    hub, in_port, out_port = start_hub_proc(procs, "--status-freq", "0")
    out_uri, in_uri = f"ws://127.0.0.1:{out_port}", f"ws://127.0.0.1:{in_port}"
    with connect(out_uri) as ws:
        ws.send(orjson.dumps({"eater_name": "huge", "protocol": PROTOCOL,
                              "chefs": [f"chef{i}" for i in range(4500)]}).decode())
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd.code == 4103
    assert "1000" in info.value.rcvd.reason and "chefs" in info.value.rcvd.reason

    chefs = [f"Chef{i}" for i in range(1000)]
    n = 30_000
    cpu = psutil.Process(hub.p.pid).cpu_times

    def hub_cpu() -> float:
        t = cpu()
        return t.user + t.system
    c0 = hub_cpu()
    alone = _relay_seconds(out_uri, in_uri, n, chefs)
    c1 = hub_cpu()
    big = []
    for i in range(20):
        ws, _ = open_eater(out_uri, f"picky{i}", batch=True, max_queue=None,
                           chefs=[f"Other{j}" for j in range(999)] + [chefs[i]])
        big.append(ws)
    drain = threading.Event()

    def read_all(ws) -> None:
        while not drain.is_set():
            try:
                ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            except ConnectionClosed:
                return
    readers = [threading.Thread(target=read_all, args=(ws,), daemon=True) for ws in big]
    for t in readers:
        t.start()
    c2 = hub_cpu()
    crowded = _relay_seconds(out_uri, in_uri, n, chefs)
    c3 = hub_cpu()
    drain.set()
    print(f"\n{n} dumplings over 1,000 chefs to a normal eater: {alone:.2f} s alone "
          f"(hub CPU {c1 - c0:.2f} s), {crowded:.2f} s beside 20 eaters with 1,000-chef "
          f"filters (hub CPU {c3 - c2:.2f} s)")
    # Hub CPU, not wall time: the test's own 20 reader threads share this machine.
    assert c3 - c2 < 3 * (c1 - c0) + 0.5, (c1 - c0, c3 - c2)
    for ws in big:
        ws.close()


def test_nan_and_inf_timestamps_are_refused():
    """NaN and Inf passed validation: JSON eaters got null, and the /metrics latency sum
    became NaN for good."""
    for bad in (math.nan, math.inf, -math.inf):
        d = dumpling(1)
        d["metadata"]["creation_time"] = bad
        with pytest.raises(InvalidDumpling):
            check_dumpling(d)
        d = dumpling(1, capture_time=bad)
        with pytest.raises(InvalidDumpling):
            check_dumpling(d)
    with HubThread() as h:
        e, _ = open_eater(h.out_uri, "e")
        k, _ = open_kitchen(h.in_uri, "k", encoding="msgpack")
        bad = dumpling(1)
        bad["metadata"]["creation_time"] = math.nan
        k.send(msgpack.packb(bad))
        k.send(msgpack.packb(dumpling(2)))
        got = recv_dumplings(e, 2, timeout=3)
        assert [d["metadata"]["sequence"] for d in got] == [2]
        assert h.hub.dumplings_invalid == 1
        assert math.isfinite(h.hub.latency.sum)
        e.close()
        k.close()


def test_metric_label_sets_are_capped():
    """The cap documented as 1,000 label sets let 1,106 series through: every new kitchen
    got its own "_other"."""
    with HubThread() as h:
        k, _ = open_kitchen(h.in_uri, "k0", batch=True)
        k.send(orjson.dumps([dumpling(i, chef=f"c{i}") for i in range(MAX_LABEL_SETS)]))
        for j in range(150):
            kj, _ = open_kitchen(h.in_uri, f"extra{j}")
            kj.send(orjson.dumps(dumpling(1, chef=f"new{j}")))
            kj.close()
        assert h.wait(lambda: h.hub.dumplings_in == MAX_LABEL_SETS + 150)
        series = h.call(lambda: [s for f in h.hub.collect() for s in f.samples
                                 if f.name == "netdumplings_hub_dumplings_in"])
        assert len(series) <= MAX_LABEL_SETS + 1, len(series)
        assert sum(s.value for s in series) == MAX_LABEL_SETS + 150
        k.close()


def test_refused_kitchen_backs_off_and_stops_on_a_wrong_token(caplog):
    """A kitchen refused with 1008 or 4105 retried several times a second, for ever."""
    from netdumplings.sender import HubSender
    caplog.set_level(logging.INFO, logger="netdumplings.sender")
    with HubThread(kitchen_token="right", max_kitchens=1) as h:
        wrong = HubSender("127.0.0.1", h.hub.in_port, {"kitchen_name": "wrong",
                                                        "token": "nope"})
        wrong.start()
        wrong._thread.join(10)
        assert not wrong._thread.is_alive()   # gave up: retrying cannot help
        assert h.hub.refused[("kitchen", "auth")] == 1
        assert wrong.refused and "token" in wrong.refused
        assert any("token" in r.getMessage() and r.levelno >= logging.ERROR
                   for r in caplog.records)
        first = HubSender("127.0.0.1", h.hub.in_port, {"kitchen_name": "first",
                                                        "token": "right"})
        first.start()
        assert first.connected.wait(5)
        extra = HubSender("127.0.0.1", h.hub.in_port, {"kitchen_name": "extra",
                                                        "token": "right"})
        extra.start()
        time.sleep(4)
        tries = h.hub.refused[("kitchen", "too_many")]
        assert 2 <= tries <= 6, tries     # backing off (0.2, 0.4, 0.8, 1.6 s ...)
        first.close(1)
        assert extra.connected.wait(15)   # and it does get in once there is room
        extra.close(1)


def test_tokens_stay_out_of_client_and_header_debug_logs(caplog):
    """With -vv, nd-print and nd-sniff logged their hellos (token included) through the
    websockets client logger, and the hub logged Authorization headers."""
    from netdumplings.eater import DumplingEater
    from netdumplings.sender import HubSender
    caplog.set_level(logging.DEBUG)
    with HubThread(eater_token="e-s3cret", kitchen_token="k-s3cret") as h:
        sender = HubSender("127.0.0.1", h.hub.in_port, {"kitchen_name": "k",
                                                         "token": "k-s3cret"})
        sender.start()
        assert sender.connected.wait(5)
        sender.put(orjson.dumps(dumpling(1)))
        got = []

        async def on_dumpling(d):
            got.append(d)
        eater = DumplingEater("e", f"127.0.0.1:{h.hub.out_port}", token="e-s3cret",
                              on_dumpling=on_dumpling)
        t = threading.Thread(target=eater.run, args=(1,), daemon=True)
        t.start()
        time.sleep(0.5)
        sender.put(orjson.dumps(dumpling(2)))
        t.join(10)
        sender.close(2)
        assert got
        # (This test's own client logs through websockets.client too, now filtered.)
        with connect(h.out_uri, additional_headers={"Authorization": "Bearer e-s3cret"}) as ws:
            ws.send(orjson.dumps({"eater_name": "hdr", "protocol": PROTOCOL}).decode())
            assert orjson.loads(ws.recv(timeout=5))["welcome"]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "< Authorization: Bearer ***" in text   # the hub's side of the header
    assert "s3cret" not in text
    assert "websockets.client" in {r.name for r in caplog.records}   # still logging
    assert "***" in text
