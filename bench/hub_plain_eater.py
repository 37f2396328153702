"""Plain benchmark eaters: N netdumplings-0.5-style WebSocket clients in one process.

Run by bench/hub_plain.py as ``python -m bench.hub_plain_eater URI N EXPECT``. Each client
says only 0.5's hello (``{"eater_name": ...}``: no protocol, no batches, no filter), so it
gets one JSON dumpling per WebSocket message, from our hub or from netdumplings 0.5.1's.
Every message is parsed (orjson) and checked: BenchChef dumplings are counted and their
``sequence`` must grow; the hubs' own status dumplings are skipped.

The clients are aiohttp's, whose frame reader is compiled (Cython): about 1.5 us a message
where websockets' pure-Python frame parser takes about 5. At 100,000 messages/s that is the
difference between the eaters taking a sixth of a core and half of one, on a 2-core machine
that also runs the hub under test.

Prints ``ready`` once every client has connected and said hello (plus half a second: neither
hub answers a 0.5 hello, so that is the time the hub has to register it), then one JSON line
with per-client results once each got EXPECT dumplings or nothing came for ``IDLE`` seconds.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import orjson

IDLE = 3.0


async def _idle(ws: aiohttp.ClientWebSocketResponse, state: dict) -> None:
    """Close ``ws`` once nothing came for IDLE seconds (120 before the first dumpling)."""
    seen = -1
    quiet = 0.0
    while True:
        await asyncio.sleep(0.25)
        if state["got"] + state["other"] != seen:
            seen, quiet = state["got"] + state["other"], 0.0
            continue
        quiet += 0.25
        if quiet >= (IDLE if state["got"] else 120):
            await ws.close()
            return


async def _count(ws: aiohttp.ClientWebSocketResponse, expect: int, state: dict) -> None:
    receive = ws.receive
    loads = orjson.loads
    text = aiohttp.WSMsgType.TEXT
    got = other = out_of_order = last_seq = 0
    try:
        while got < expect:
            msg = await receive()
            if msg.type is not text:
                break
            md = loads(msg.data)["metadata"]
            if md["chef"] != "BenchChef":
                other += 1
                state["other"] = other
                continue
            seq = md["sequence"]
            if seq <= last_seq:
                out_of_order += 1
            last_seq = seq
            got += 1
            if got & 255 == 1:   # progress for the watchdog; times to 256 dumplings
                state["got"] = got
                state["last"] = time.time()
                if state["first"] is None:
                    state["first"] = state["last"]
        if got:
            state["last"] = time.time()
    finally:
        state.update(got=got, other=other, out_of_order=out_of_order)


async def one(session: aiohttp.ClientSession, uri: str, i: int, expect: int,
              connected: list[int], n: int, ready: asyncio.Event) -> dict:
    state = {"got": 0, "other": 0, "out_of_order": 0, "first": None, "last": None}
    async with session.ws_connect(uri, compress=0, max_msg_size=0, autoping=True,
                                  heartbeat=None) as ws:
        await ws.send_str(orjson.dumps({"eater_name": f"plain-{i}"}).decode())
        connected[0] += 1
        if connected[0] == n:
            ready.set()
        # A watchdog, not a timeout per receive: asyncio.wait_for makes a task per call,
        # which cost more than the message itself and capped an eater at ~40,000/s.
        watch = asyncio.create_task(_idle(ws, state))
        try:
            await _count(ws, expect, state)
        finally:
            watch.cancel()
    got, other, out_of_order = state["got"], state["other"], state["out_of_order"]
    first, last = state["first"], state["last"]
    return {"eater": i, "received": got, "other": other, "out_of_order": out_of_order,
            "first": first, "last": last}


async def main() -> None:
    uri, n, expect = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ready = asyncio.Event()
    connected = [0]
    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(one(session, uri, i, expect, connected, n, ready))
                 for i in range(n)]
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(0.5)
        print("ready", flush=True)
        cpu0 = time.process_time()
        results = await asyncio.gather(*tasks)
    for r in results:   # this process's CPU from "ready" on, shared by its clients
        r["process_cpu_s"] = round(time.process_time() - cpu0, 3)
        r["clients_in_process"] = n
    print(orjson.dumps(results).decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
