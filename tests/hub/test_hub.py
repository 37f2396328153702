"""The hub's protocol: welcome and acks, 0.5 mode, batches, subscriptions, msgpack, validation,
status and metrics, eater de-duplication - real hubs and real WebSocket clients on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request

import msgpack
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from conftest import nd_command
from netdumplings.wire.dumpling import Dumpling
from netdumplings.eater.client import DumplingEater
from netdumplings.hub.server import InvalidDumpling, check_dumpling
from netdumplings.wire.sender import HubSender
from hub_helpers import (HubThread, dumpling, open_eater, open_kitchen, recv_dumplings)

pytestmark = pytest.mark.timeout(60)


def last_ack(ws, want: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    ack = -1
    while ack < want and time.monotonic() < deadline:
        try:
            msg = orjson.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        except TimeoutError:
            break
        ack = msg["ack"]
    return ack


def test_welcome_ack_and_batches():
    with HubThread() as h:
        eater, ew = open_eater(h.out_uri, batch=True)
        assert ew == {**ew, "welcome": "netdumplings", "role": "eater", "batch": True,
                      "encoding": "json"}
        assert "ack" not in ew
        k, kw = open_kitchen(h.in_uri, batch=True)
        assert kw["role"] == "kitchen" and kw["batch"] is True and kw["ack"] is True
        k.send(orjson.dumps([dumpling(i) for i in range(1, 301)]).decode())
        k.send(orjson.dumps(dumpling(301)).decode())
        assert last_ack(k, 2) == 2  # two data messages processed
        got = recv_dumplings(eater, 301)
        assert [d["metadata"]["sequence"] for d in got] == list(range(1, 302))
        st = h.status()
        assert st["total_dumplings_in"] == 301
        assert st["dumpling_kitchens"][0]["dumplings"] == 301
        k.close()
        eater.close()


def test_05_clients_get_no_welcome_no_acks_no_batches():
    """A hello without ``protocol``: one JSON dumpling per text message, nothing else."""
    with HubThread() as h:
        eater, _ = open_eater(h.out_uri, protocol=False)
        k, _ = open_kitchen(h.in_uri, protocol=False)
        raw = [orjson.dumps(dumpling(i)).decode() for i in range(1, 51)]
        for r in raw:
            k.send(r)
        msgs = [eater.recv(timeout=5) for _ in range(50)]
        assert all(isinstance(m, str) for m in msgs)
        assert msgs == raw  # the kitchen's own bytes: no re-serialisation
        with pytest.raises(TimeoutError):
            k.recv(timeout=0.3)  # no welcome, no acks for a 0.5 kitchen
        k.close()
        eater.close()


def test_subscriptions_filter_on_the_hub():
    with HubThread() as h:
        everything, _ = open_eater(h.out_uri, "all")
        by_chef, _ = open_eater(h.out_uri, "dns", chefs=["DNSChef"])
        by_kitchen, _ = open_eater(h.out_uri, "k2", kitchens=["k2"])
        by_driver, _ = open_eater(h.out_uri, "iv", drivers=["interval"])
        k1, _ = open_kitchen(h.in_uri, "k1")
        k2, _ = open_kitchen(h.in_uri, "k2")
        k1.send(orjson.dumps(dumpling(1, chef="DNSChef", kitchen="k1")))
        k1.send(orjson.dumps(dumpling(2, chef="ARPChef", kitchen="k1", driver="interval")))
        k2.send(orjson.dumps(dumpling(1, chef="DNSChef", kitchen="k2")))
        k2.send(orjson.dumps(dumpling(2, chef="ARPChef", kitchen="k2")))
        h.wait(lambda: h.hub.dumplings_in == 4)
        h.call(h.hub.publish_status)

        def who(ws, n):
            got = recv_dumplings(ws, n, timeout=5, skip_status=False)
            got += recv_dumplings(ws, 1, timeout=0.2, skip_status=False)  # nothing more
            return [(d["metadata"]["kitchen"], d["metadata"]["chef"]) for d in got]
        status = (None, "SystemStatusChef")
        assert who(everything, 5) == [("k1", "DNSChef"), ("k1", "ARPChef"),
                                       ("k2", "DNSChef"), ("k2", "ARPChef"), status]
        assert who(by_chef, 2) == [("k1", "DNSChef"), ("k2", "DNSChef")]
        # A kitchen filter means that kitchen only: no hub status dumplings either.
        assert who(by_kitchen, 2) == [("k2", "DNSChef"), ("k2", "ARPChef")]
        assert who(by_driver, 2) == [("k1", "ARPChef"), status]
        for ws in (everything, by_chef, by_kitchen, by_driver, k1, k2):
            ws.close()


def test_msgpack_both_ways_serialised_once_per_encoding():
    with HubThread() as h:
        mp_eater, w = open_eater(h.out_uri, "mp", encoding="msgpack", batch=True)
        assert w["encoding"] == "msgpack"
        js_eater, _ = open_eater(h.out_uri, "js", batch=False)
        old_eater, _ = open_eater(h.out_uri, "old", protocol=False)
        k, kw = open_kitchen(h.in_uri, encoding="msgpack", batch=True)
        assert kw["encoding"] == "msgpack"
        sent = [dumpling(i, payload={"bytes": b"\x00\xff".hex(), "n": i}) for i in range(1, 5)]
        k.send(msgpack.packb(sent[0]))                 # one dumpling, binary frame
        k.send(msgpack.packb(sent[1:]))                # a batch, binary frame
        k.send(orjson.dumps(sent[3] | {"payload": "json"}).decode())  # JSON still works
        assert last_ack(k, 3) == 3
        mp = []
        deadline = time.monotonic() + 5
        while len(mp) < 5 and time.monotonic() < deadline:
            m = mp_eater.recv(timeout=5)
            assert isinstance(m, bytes)
            obj = msgpack.unpackb(m)
            mp.extend(obj if isinstance(obj, list) else [obj])
        js = recv_dumplings(js_eater, 5)
        old = [old_eater.recv(timeout=5) for _ in range(5)]
        assert mp == js == [orjson.loads(o) for o in old] == sent + [sent[3] | {"payload":
                                                                               "json"}]
        assert all(isinstance(o, str) for o in old)
        for ws in (mp_eater, js_eater, old_eater, k):
            ws.close()


def test_sender_and_eater_speak_msgpack():
    with HubThread() as h:
        got: list[dict] = []
        eater = DumplingEater("mp", h.out_uri, encoding="msgpack",
                              on_dumpling=lambda d: _append(got, d))
        loop = asyncio.new_event_loop()
        t = threading.Thread(target=loop.run_until_complete, args=(eater.eat(100),),
                             daemon=True)
        t.start()
        assert h.wait(lambda: len(h.hub.eaters) == 1)
        sender = HubSender("127.0.0.1", h.hub.in_port, {"kitchen_name": "mk"},
                           encoding="msgpack")
        sender.start()
        for i in range(1, 101):
            sender.put(orjson.dumps(dumpling(i, kitchen="mk")))
        assert sender.close(10)
        t.join(10)
        assert [d["metadata"]["sequence"] for d in got] == list(range(1, 101))
        assert sender.acked == 100
        info = h.status()
        assert info["total_dumplings_in"] == 100


async def _append(lst: list, d: dict) -> None:
    lst.append(d)


BAD = [
    ("not json", b"{nope", "not_decodable"),
    ("not an object", b"[1, 2]", "invalid"),
    ("no metadata", orjson.dumps({"payload": 1}), "invalid"),
    ("no payload", orjson.dumps({"metadata": dumpling(1)["metadata"]}), "invalid"),
    ("bad driver", orjson.dumps(dumpling(1, driver="cron")), "invalid"),
    ("string time", orjson.dumps(dumpling(1) | {"metadata": dumpling(1)["metadata"] |
                                                {"creation_time": "1.5"}}), "invalid"),
    ("bool time", orjson.dumps(dumpling(1) | {"metadata": dumpling(1)["metadata"] |
                                              {"creation_time": True}}), "invalid"),
    ("numeric chef", orjson.dumps(dumpling(1) | {"metadata": dumpling(1)["metadata"] |
                                                 {"chef": 7}}), "invalid"),
    ("float sequence", orjson.dumps(dumpling(1.5)), "invalid"),
    ("too big", orjson.dumps(dumpling(1, payload="x" * 5000)), "too_big"),
    ("garbage msgpack", b"\x85\xc1\xc1", "not_decodable"),
]


def test_invalid_dumplings_rejected_counted_kitchen_stays():
    with HubThread(max_dumpling_size=4096, metrics_port=0) as h:
        eater, _ = open_eater(h.out_uri)
        k, _ = open_kitchen(h.in_uri)
        for _, raw, _ in BAD:
            k.send(raw)
        k.send(orjson.dumps(dumpling(99)))
        assert last_ack(k, len(BAD) + 1) == len(BAD) + 1  # still connected, still acked
        got = recv_dumplings(eater, 2, timeout=1.5)
        assert [d["metadata"]["sequence"] for d in got] == [99]
        st = h.status()
        assert st["total_dumplings_invalid"] == len(BAD)
        assert st["dumpling_kitchens"][0]["invalid"] == len(BAD)
        metrics = scrape(h.hub.metrics_port)
        rejected = {s.labels["reason"]: s.value
                    for s in metrics["netdumplings_hub_dumplings_rejected"].samples
                    if s.name.endswith("_total")}
        want: dict[str, float] = {}
        for _, _, reason in BAD:
            want[reason] = want.get(reason, 0) + 1
        assert rejected == want
        k.close()
        eater.close()


def test_flooding_kitchen_is_closed():
    with HubThread(flood_limit=20) as h:
        k, _ = open_kitchen(h.in_uri)
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(200):
                k.send(b'{"junk": 1}')
                time.sleep(0.002)
            while True:
                k.recv(timeout=5)
        assert info.value.rcvd.code == 4106


@pytest.mark.parametrize("name,raw,reason", [b for b in BAD if b[2] == "invalid"])
def test_check_dumpling_agrees_with_the_published_model(name, raw, reason):
    """The hub's check and ``Dumpling`` (strict) say no to the same things..."""
    obj = orjson.loads(raw)
    with pytest.raises(InvalidDumpling):
        check_dumpling(obj)
    with pytest.raises(Exception):
        Dumpling.model_validate(obj, strict=True)


def test_check_dumpling_accepts_what_the_model_accepts():
    """...and yes to the same things, extra fields included (0.5 dumplings have none of
    sequence/host/capture_time; future ones may carry more)."""
    for obj in (dumpling(1), dumpling(1, kitchen=None, driver="interval"),
                {"metadata": {"chef": "C", "kitchen": "k", "creation_time": 1,
                              "driver": "packet", "new_field": [1]}, "payload": None}):
        assert check_dumpling(obj)[0] == obj["metadata"]["chef"]
        Dumpling.model_validate(obj, strict=True)


def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_and_healthz():
    with HubThread(metrics_port=0) as h:
        fast, _ = open_eater(h.out_uri, "fast")
        k, _ = open_kitchen(h.in_uri, "kx")
        for i in range(1, 21):
            k.send(orjson.dumps(dumpling(i, kitchen="kx", chef="A" if i % 2 else "B")))
        assert len(recv_dumplings(fast, 20)) == 20
        assert h.wait(lambda: h.hub.dumplings_out == 20)
        m = scrape(h.hub.metrics_port)
        ins = {(s.labels["kitchen"], s.labels["chef"]): s.value
               for s in m["netdumplings_hub_dumplings_in"].samples if s.name.endswith("_total")}
        assert ins == {("kx", "A"): 10, ("kx", "B"): 10}
        outs = {s.labels["eater"]: s.value for s in m["netdumplings_hub_dumplings_out"].samples
                if s.name.endswith("_total")}
        assert outs == {"fast": 20}
        conns = {s.labels["role"]: s.value for s in m["netdumplings_hub_connections"].samples}
        assert conns == {"kitchen": 1, "eater": 1}
        lat = {s.labels.get("le"): s.value
               for s in m["netdumplings_hub_relay_latency_seconds"].samples
               if s.name.endswith("_bucket")}
        assert 1 <= lat["+Inf"] <= 20 and lat["1.0"] == lat["+Inf"]  # loopback: < 1 s
        assert "netdumplings_hub_queue_depth" in m
        with urllib.request.urlopen(f"http://127.0.0.1:{h.hub.metrics_port}/healthz",
                                    timeout=5) as r:
            health = orjson.loads(r.read())
        assert health["status"] == "ok" and health["kitchens"] == 1
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{h.hub.metrics_port}/nope", timeout=5)
        assert err.value.code == 404
        fast.close()
        k.close()
        assert h.wait(lambda: not h.hub.eaters)
        m = scrape(h.hub.metrics_port)  # a gone eater's counts stay
        outs = {s.labels["eater"]: s.value for s in m["netdumplings_hub_dumplings_out"].samples
                if s.name.endswith("_total")}
        assert outs == {"fast": 20}


def test_eater_drops_exact_duplicates_only():
    """A resend after a hub restart repeats dumplings; a restarted kitchen reuses sequence
    numbers with new creation times - only the first are duplicates."""
    with HubThread() as h:
        got: list[dict] = []
        eater = DumplingEater("dedupe", h.out_uri, on_dumpling=lambda d: _append(got, d))
        loop = asyncio.new_event_loop()
        t = threading.Thread(target=loop.run_until_complete, args=(eater.eat(6),), daemon=True)
        t.start()
        assert h.wait(lambda: len(h.hub.eaters) == 1)
        k, _ = open_kitchen(h.in_uri)
        first = [dumpling(i) for i in (1, 2, 3)]
        for d in first + first[1:]:                       # 2 and 3 resent
            k.send(orjson.dumps(d))
        time.sleep(0.01)
        for d in [dumpling(i) for i in (1, 2, 3)]:        # kitchen restarted
            k.send(orjson.dumps(d))
        t.join(10)
        assert [d["metadata"]["sequence"] for d in got] == [1, 2, 3, 1, 2, 3]
        assert eater.duplicates == 2
        k.close()


def test_nd_print_chef_subscribes_on_the_hub(hub_process, procs):
    in_port, out_port, _ = hub_process(status_freq=0.3)
    printer = procs(nd_command("nd-print") + ["--hub", f"127.0.0.1:{out_port}", "--json",
                                              "--chef", "DNSChef", "--count", "3"])
    watcher = procs(nd_command("nd-print") + ["--hub", f"127.0.0.1:{out_port}", "--json",
                                              "--chef", "SystemStatusChef", "--count", "8"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(
            [line for line in watcher.out if '"dumpling_eater_count":2' in line]) == 0:
        time.sleep(0.05)
    k, _ = open_kitchen(f"ws://127.0.0.1:{in_port}")
    for i in range(1, 7):
        k.send(orjson.dumps(dumpling(i, chef="DNSChef" if i % 2 else "Other")))
    assert printer.wait(15) == 0
    chefs = [orjson.loads(line)["metadata"]["chef"] for line in printer.out
             if line.startswith("{")]
    assert chefs == ["DNSChef"] * 3
    assert watcher.wait(15) == 0
    statuses = [orjson.loads(line)["payload"] for line in watcher.out if line.startswith("{")]
    eaters = [e for s in statuses for e in s["dumpling_eaters"]]
    assert any(e["info_from_eater"].get("chefs") == ["DNSChef"] for e in eaters)
    k.close()


def test_outbox_drops_pending_before_in_flight_and_resends_in_order():
    """The kitchen side of acks: what is in flight survives overflow (it has probably reached
    the hub) and comes back first, in order, after a reconnect."""
    from netdumplings.wire.sender import Outbox
    box = Outbox(max_bytes=100)
    items = [b"%010d" % i for i in range(30)]          # 10 bytes each
    for it in items[:4]:
        box.put(it)
    taken = box.take(10, window=30)
    assert taken == items[:3] and box.in_flight == 3     # the window stops at 30 bytes
    for it in items[4:20]:
        box.put(it)
    assert box.bytes <= 100 and box.dropped_total == 10  # 10 oldest *pending* dropped
    assert box.take(0) == [] and box.in_flight == 3
    box.acked(1)                                         # the hub has items[0]
    assert box.requeue() == 2
    resent = box.take(100)
    assert resent[:2] == items[1:3]                      # in flight first, in order
    assert resent[2:] == items[13:20]                    # then the newest pending
    box.acked(len(resent))
    assert len(box) == 0 and box.bytes == 0 and box.inflight_bytes == 0


def test_sender_lingers_so_a_steady_trickle_shares_messages():
    """At a few thousand dumplings a second a batch link sends at most one message per
    ``linger`` (here 5 ms) instead of one per dumpling; nothing is lost or reordered."""
    with HubThread() as h:
        got: list[dict] = []
        eater = DumplingEater("trickle", h.out_uri, on_dumpling=lambda d: _append(got, d))
        loop = asyncio.new_event_loop()
        n = 600
        t = threading.Thread(target=loop.run_until_complete, args=(eater.eat(n),), daemon=True)
        t.start()
        assert h.wait(lambda: len(h.hub.eaters) == 1)
        sender = HubSender("127.0.0.1", h.hub.in_port, {"kitchen_name": "tk"}, linger=0.005)
        sender.start()
        assert sender.connected.wait(10)
        started = time.monotonic()
        for i in range(1, n + 1):
            sender.put(orjson.dumps(dumpling(i, kitchen="tk")))
            if i % 2 == 0:
                time.sleep(0.001)        # about 2 dumplings a millisecond, for ~0.3 s+
        assert sender.close(10)
        elapsed = time.monotonic() - started
        t.join(10)
        assert [d["metadata"]["sequence"] for d in got] == list(range(1, n + 1))
        # sends are >= 5 ms apart while dumplings keep coming: the bound holds on any machine
        assert sender.messages <= elapsed / 0.005 + 2, (sender.messages, elapsed)
