"""Benchmark eaters: N WebSocket clients in one process, counting what the hub relays.

Run by bench/hub.py as ``python -m bench.hub_eater URI N ENCODING EXPECT``. Prints ``ready``
once every client has its welcome, then one JSON line with per-client results when each
got EXPECT dumplings or nothing arrived for ``IDLE`` seconds. Latency is receive time minus
the dumpling's ``creation_time`` (set by the kitchen; of the first and last dumpling of each
frame: the oldest and the newest in it), so it includes the kitchen's outbox
and both WebSocket hops: an upper bound on the hub's own relay time.
"""

from __future__ import annotations

import asyncio
import sys
import time

import msgpack
import orjson
from websockets.asyncio.client import connect

IDLE = 3.0


async def one(uri: str, i: int, encoding: str, expect: int, ready: asyncio.Event,
              ready_count: list[int], n: int) -> dict:
    got = 0
    missed = 0
    out_of_order = 0
    last_seq = 0
    lat: list[float] = []
    first = last = None
    async with connect(uri, max_size=None, compression=None) as ws:
        await ws.send(orjson.dumps({"eater_name": f"bench-{i}", "protocol": "netdumplings/1",
                                    "batch": True, "encoding": encoding,
                                    "chefs": ["BenchChef"]}).decode())
        await ws.recv()  # welcome
        ready_count[0] += 1
        if ready_count[0] == n:
            ready.set()
        unpack = (lambda m: msgpack.unpackb(m, raw=False)) if encoding == "msgpack" \
            else orjson.loads
        while got < expect:
            try:
                msg = await asyncio.wait_for(ws.recv(), IDLE if got else 120)
            except asyncio.TimeoutError:
                break
            now = time.time()
            if first is None:
                first = now
            last = now
            obj = unpack(msg)
            items = obj if isinstance(obj, list) else [obj]
            # One pass in C per frame for the common case (all BenchChef dumplings, in
            # order): the eaters share a process and cores with the hub and the kitchen,
            # and a Python loop per dumpling would make them, not the hub, the limit.
            mds = [d["metadata"] for d in items]
            seqs = [m.get("sequence") for m in mds]
            if None not in seqs and seqs[0] > last_seq and seqs == sorted(set(seqs)):
                got += len(seqs)
                last_seq = seqs[-1]
                lat.append(now - mds[0]["creation_time"])
                lat.append(now - mds[-1]["creation_time"])
                continue
            for d, md, seq in zip(items, mds, seqs):
                if md["chef"] != "BenchChef":
                    missed += (d.get("payload") or {}).get("missed", 0)
                    continue
                if seq <= last_seq:
                    out_of_order += 1
                last_seq = seq
                got += 1
                lat.append(now - md["creation_time"])
    lat.sort()

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else None

    return {"eater": i, "received": got, "hub_reported_missed": missed,
            "out_of_order": out_of_order, "first": first, "last": last,
            "latency_ms_p50": pct(0.5), "latency_ms_p99": pct(0.99),
            "latency_ms_max": round(lat[-1] * 1000, 3) if lat else None}


async def main() -> None:
    uri, n, encoding, expect = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    ready = asyncio.Event()
    count = [0]
    tasks = [asyncio.create_task(one(uri, i, encoding, expect, ready, count, n))
             for i in range(n)]
    await asyncio.wait_for(ready.wait(), 30)
    print("ready", flush=True)
    results = await asyncio.gather(*tasks)
    print(orjson.dumps(results).decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
