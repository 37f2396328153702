"""The NATS backplane against dumplings and names that cannot cross NATS, and a paused NATS.

Real nats-server (loopback), two real nd-hub processes, raw WebSocket kitchens and eaters:
one dumpling over the server's max_payload, or a kitchen name too long for a subject, used
to stall a hub's outbox for good or make nats-server drop its connection for good."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import pytest

from test_backplane import HubProc, Nats, _eat, _hubs, _status
from test_backplane import nats_server  # noqa: F401 (fixture)
from hub_helpers import cook_raw as _cook, dumpling
from netdumplings.hub.subjects import MAX_SUBJECT, interest_subjects
from netdumplings.wire.messages import EaterHello

pytestmark = pytest.mark.timeout(90)


def _dumpling(kitchen: str, seq: int, payload: Any, chef: str = "QaChef") -> str:
    return json.dumps(dumpling(seq, chef=chef, kitchen=kitchen, payload=payload))


async def _eat_all(port: int, extra: dict[str, Any], n: int, timeout: float) -> list[dict]:
    """An eater that takes dumplings of any size, until it has n of them."""
    from websockets.asyncio.client import connect

    got: list[dict] = []
    async with connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
        await ws.send(json.dumps({"eater_name": "big", "protocol": "netdumplings/1", **extra}))
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            try:
                d = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if "metadata" in d:
                got.append(d)
    return got


def _seqs(ds: list[dict], kitchen: str) -> list[int]:
    return [d["metadata"]["sequence"] for d in ds if d["metadata"].get("kitchen") == kitchen]


def test_names_too_long_for_a_subject_are_not_subscribed():
    long = "k" * (MAX_SUBJECT + 1)
    hello = EaterHello(eater_name="e", kitchens=[long])
    assert interest_subjects([hello]) == []   # nothing could ever be published there
    both = EaterHello(eater_name="e", kitchens=[long, "ok"], chefs=["C"])
    assert interest_subjects([both]) == ["dumplings.ok.C"]
    assert all(len(s) <= MAX_SUBJECT for s in interest_subjects(
        [EaterHello(eater_name="e", kitchens=["é" * 300], chefs=["x" * 300])]))


def test_unpublishable_dumplings_are_counted_not_stuck(nats_server, procs):
    """A 2 MB dumpling (NATS default max_payload is 1 MB) and a kitchen name of 5000
    characters stay with the hub's own eaters, are counted and warned about once, and the
    dumplings after them still cross; an eater asking for such a kitchen does not cost its
    hub the NATS connection. Then a paused NATS (SIGSTOP) only delays dumplings."""
    a, b = _hubs(procs, nats_server, "--replay", "10m", "--replay-max", "1000")
    long_kitchen = "L." * 2500

    async def run() -> tuple[list[dict], list[dict]]:
        # only this eater on B: its subscription is the long kitchen's alone
        odd = asyncio.create_task(_eat(b.out_port, {"kitchens": [long_kitchen]},
                                       lambda ds: False, 2.0))
        await asyncio.sleep(1.0)
        remote = asyncio.create_task(_eat(b.out_port, {"kitchens": ["k1", long_kitchen]},
                                          lambda ds: len(_seqs(ds, "k1")) >= 5, 15))
        local = asyncio.create_task(_eat_all(a.out_port, {"kitchens": ["k1", long_kitchen]},
                                             6, 15))
        await asyncio.sleep(1.0)
        await _cook(a.in_port, "k1", [
            _dumpling("k1", 1, {"x": 1}), _dumpling("k1", 2, {"big": "b" * 2_000_000}),
            _dumpling(long_kitchen, 1, {"x": 2}), _dumpling("k1", 3, {"x": 3}),
            _dumpling("k1", 4, {"big": "c" * 1_100_000}), _dumpling("k1", 5, {"x": 5})])
        await odd
        return await remote, await local

    remote, local = asyncio.run(run())
    assert _seqs(remote, "k1") == [1, 3, 5]            # not the big ones, nothing stuck
    assert _seqs(local, "k1") == [1, 2, 3, 4, 5]       # local eaters get everything
    assert _seqs(local, long_kitchen) == [1]
    status = _status(b, "hub-a")["backplane"]
    assert status["connected"] and status["outages"] == 0
    assert status["too_big"] == 2 and status["long_names"] == 1 and status["waiting"] == 0
    assert _status(b, "hub-b")["backplane"]["outages"] == 0
    warnings = [line for line in a.proc.err if "WARNING" in line]
    assert sum("over the NATS server's max_payload" in w for w in warnings) == 1, warnings
    assert sum("too long for a NATS subject" in w for w in warnings) == 1, warnings
    assert not any("lost" in line for line in a.proc.err + b.proc.err)
    assert not any("Traceback" in line for line in a.proc.err + b.proc.err)

    # replay limits beyond anything the stream holds are clamped, not an error
    got = asyncio.run(_eat(b.out_port, {"replay": {"last": 1e300, "since": 1e300},
                                        "kitchens": ["k1"]},
                           lambda ds: len(_seqs(ds, "k1")) >= 3, 10))
    assert _seqs(got, "k1") == [1, 3, 5]
    assert not any("replay for eater" in line for line in b.proc.err)

    # NATS paused for 3 s: dumplings published meanwhile arrive late, once, in order
    eater = asyncio.run(_pause_nats_while_cooking(nats_server, a, b))
    assert _seqs(eater, "k2") == list(range(1, 201))


async def _pause_nats_while_cooking(nats: Nats, a: HubProc, b: HubProc) -> list[dict]:
    task = asyncio.create_task(_eat(b.out_port, {"kitchens": ["k2"]},
                                    lambda ds: len(_seqs(ds, "k2")) >= 200, 25))
    await asyncio.sleep(0.8)
    assert nats.proc is not None
    nats.proc.send_signal(signal.SIGSTOP)
    try:
        await _cook(a.in_port, "k2", [_dumpling("k2", i, {"i": i}) for i in range(1, 201)])
        await asyncio.sleep(2.5)
    finally:
        nats.proc.send_signal(signal.SIGCONT)
    return await task
