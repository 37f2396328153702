"""The Python eater API: DumplingEater with callables and as a subclass, against a real hub."""

from __future__ import annotations

import asyncio
import threading
import time

import orjson

from conftest import DATA, nd_command
from netdumplings.eater.client import DumplingEater, HubUnavailable
from conftest import free_port
from hub_helpers import dumpling, open_kitchen


def _replay(procs, in_port: int, *chefs: str) -> None:
    args = nd_command("nd-sniff") + ["-r", str(DATA / "dns-queries.pcap"), "-n", "api",
                                     "--hub", f"127.0.0.1:{in_port}"]
    for chef in chefs:
        args += ["-c", chef]
    assert procs(args).wait(30) == 0


def _run_in_thread(eater: DumplingEater, count: int) -> threading.Thread:
    t = threading.Thread(target=eater.run, kwargs={"dumpling_count": count}, daemon=True)
    t.start()
    return t


def test_eater_with_callables_and_chef_filter(hub_process, procs):
    in_port, out_port, _ = hub_process()
    got, events = [], []
    connected = threading.Event()

    async def on_connect(uri, websocket):
        events.append(("connect", uri))
        connected.set()

    async def on_dumpling(dumpling):
        got.append(dumpling)

    eater = DumplingEater("api-eater", f"127.0.0.1:{out_port}", chef_filter=["DNSLookupChef"],
                          on_connect=on_connect, on_dumpling=on_dumpling)
    t = _run_in_thread(eater, 7)
    assert connected.wait(10)
    _replay(procs, in_port, "DNSLookupChef", "PacketCountChef")
    t.join(20)
    assert not t.is_alive()
    assert events == [("connect", f"ws://127.0.0.1:{out_port}")]
    assert len(got) == 7 and {d["metadata"]["chef"] for d in got} == {"DNSLookupChef"}
    assert [d["metadata"]["sequence"] for d in got] == sorted(d["metadata"]["sequence"]
                                                               for d in got)


def test_eater_as_subclass_sees_interval_and_packet_dumplings(hub_process, procs):
    in_port, out_port, _ = hub_process()

    class Counter(DumplingEater):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.by_driver: dict[str, int] = {}
            self.ready = threading.Event()

        async def on_connect(self, uri, websocket):
            self.ready.set()

        async def on_dumpling(self, dumpling):
            md = dumpling["metadata"]
            key = (md["kitchen"], md["driver"])
            self.by_driver[key] = self.by_driver.get(key, 0) + 1
            if self.by_driver.get(("api", "interval")):  # the kitchen's last dumpling
                self.stop()

    eater = Counter(name="subclass", hub=f"127.0.0.1:{out_port}", kitchen_filter=["api"])
    t = _run_in_thread(eater, 1000)
    assert eater.ready.wait(10)
    _replay(procs, in_port, "DNSLookupChef")
    t.join(20)
    assert not t.is_alive()
    assert eater.by_driver[("api", "packet")] == 6 and eater.by_driver[("api", "interval")] == 1
    assert set(eater.by_driver) <= {("api", "packet"), ("api", "interval"), (None, "interval")}


def test_eater_reports_missing_hub_or_reconnects():
    eater = DumplingEater("lonely", f"127.0.0.1:{free_port()}")
    try:
        asyncio.run(eater.eat(1))
    except HubUnavailable as exc:
        assert "cannot reach the hub" in str(exc)
    else:
        raise AssertionError("no error without a hub")
    lost = []

    async def on_connection_lost(exc):
        lost.append(exc)
        if len(lost) >= 2:
            eater2.stop()

    eater2 = DumplingEater("patient", f"127.0.0.1:{free_port()}", reconnect=True,
                           on_connection_lost=on_connection_lost, backoff_max=0.2)
    asyncio.run(asyncio.wait_for(eater2.eat(1), 20))
    assert len(lost) >= 2


def test_missed_notices_reach_a_filtered_eater(hub_process):
    """An eater that subscribes to one chef and falls behind still hears how much the hub
    dropped for it (the notices come from HubNoticeChef, outside its filter): what it got
    plus what it was told it missed is everything that was sent."""
    in_port, out_port, _ = hub_process()
    n = 20_000
    notices: list[dict] = []
    got: list[int] = []
    ready = threading.Event()

    class Slow(DumplingEater):
        async def on_connect(self, uri, websocket):
            ready.set()

        async def on_dumpling(self, d):
            assert d["metadata"]["chef"] == "TestChef"
            if not got:
                await asyncio.sleep(3)   # falls behind: the hub's queue of 50 overflows
            got.append(d["metadata"]["sequence"])
            if len(got) + self.missed >= n:
                self.stop()

        async def on_missed(self, notice):
            notices.append(notice)
            if len(got) + self.missed >= n:
                self.stop()

    eater = Slow(name="slow", hub=f"127.0.0.1:{out_port}", chef_filter=["TestChef"],
                 queue_size=50)
    t = _run_in_thread(eater, None)
    assert ready.wait(10)
    kitchen, _ = open_kitchen(f"ws://127.0.0.1:{in_port}", batch=True)
    pad = "x" * 1000     # 20 MB in all: more than the socket buffers between hub and eater
    for first in range(1, n + 1, 500):
        kitchen.send(orjson.dumps([dumpling(i, payload={"pad": pad})
                                   for i in range(first, first + 500)]))
    deadline = time.monotonic() + 30
    while t.is_alive() and time.monotonic() < deadline:
        t.join(0.5)
    kitchen.close()
    assert not t.is_alive(), (len(got), eater.missed)
    assert notices and eater.missed == sum(x["missed"] for x in notices) > 0
    assert len(got) + eater.missed == n
    assert got == sorted(got) and got[-1] == n
