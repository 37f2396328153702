"""Per-chef cost: where the all-chefs kitchen spends its time, and the protocol decoders alone.

``python -m bench.chefs [--packets N] [--profile]``

* ``shares``: the default bundled chefs over the first N packets of the mixed capture under
  pyinstrument, with each sample charged to the outermost chef module on its stack, so the
  shares answer "how much would the kitchen gain if this chef cost nothing".
* ``decoders``: the DNS messages and HTTP/1 streams of that sample fed straight to the chefs'
  decoders (no kitchen), timed per message, with the dnslib / h11-only path next to the
  fast path so a regression in either shows.

Not part of the test suite: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from netdumplings.kitchen.chef import Direction
from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.kitchen.registry import bundled_chefs
from netdumplings.capture.sources import PcapSource

from .kitchen import cook_file, default_chefs, kitchen_loop, mixed_capture

CHEFS_DIR = Path(__file__).resolve().parent.parent / "chefs"


def _chef_of(path: str) -> str | None:
    """The chef module (``http1`` for chefs/http1.py or any module of chefs/http1/)."""
    p = Path(path)
    if p.suffix != ".py":
        return None
    if p.parent.name == "chefs":
        return p.stem
    if p.parent.parent.name == "chefs":   # a module of a chef package
        return p.parent.name
    return None


def chef_shares(path: Path, limit: int) -> tuple[float, dict[str, float]]:
    """(seconds under the profiler, {chef module: share of the time})."""
    from pyinstrument import Profiler

    prof = Profiler(interval=0.0005)
    prof.start()
    kitchen_loop(path, default_chefs(), limit)
    prof.stop()
    root = prof.last_session.root_frame()
    total = root.time
    shares: dict[str, float] = defaultdict(float)

    def walk(frame: Any) -> None:
        # a sample belongs to the first chef module met on the way down; stdlib/library
        # frames below it (dnslib, h11, re) are that chef's cost
        chef = _chef_of(frame.file_path or "")
        if chef is not None:
            shares[chef] += frame.time
            return
        for child in frame.children:
            walk(child)

    walk(root)
    return total, {k: v / total for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}


def _collect(path: Path, limit: int) -> tuple[list[bytes], list[list[tuple[Direction, bytes, float]]]]:
    """DNS payloads and per-connection HTTP/1 byte streams of the first ``limit`` packets,
    taken from a kitchen with recording chefs (so reassembly is the kitchen's own)."""
    from netdumplings.kitchen.chef import DatagramChef, StreamChef

    dns: list[bytes] = []
    streams: dict[int, list[tuple[Direction, bytes, float]]] = {}

    class DnsRec(DatagramChef):
        default_ports = (53,)

        def on_data(self, flow: Any, direction: Any, data: bytes, timestamp: float) -> None:
            dns.append(bytes(data))

    class HttpRec(StreamChef):
        default_ports = bundled_chefs()["Http1Chef"].default_ports

        def on_data(self, flow: Any, direction: Any, data: bytes, timestamp: float) -> None:
            streams.setdefault(flow.id, []).append((direction, bytes(data), timestamp))

    k = Kitchen("collect", [DnsRec, HttpRec], poke_interval=None, host="bench")
    src = PcapSource(path)
    try:
        n = 0
        for p in src:
            k.process(p)
            n += 1
            if n >= limit:
                break
        k.finish()
    finally:
        src.close()
    return dns, list(streams.values())


def _best(fn: Callable[[], Any], reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def decoders(path: Path, limit: int) -> dict[str, Any]:
    from netdumplings.chefs import dns as dnsmod
    from netdumplings.chefs.http1 import Http1Decoder

    dns, streams = _collect(path, limit)
    out: dict[str, Any] = {"dns_messages": len(dns), "http_streams": len(streams)}
    slow = getattr(dnsmod, "parse_message_dnslib", None)
    variants = [("dns fast path", dnsmod.parse_message)]
    if slow is not None:
        variants.append(("dns dnslib only", slow))
    for name, parse in variants:
        def run(parse: Callable[[bytes], Any] = parse) -> None:
            for m in dns:
                try:
                    parse(m)
                except Exception:
                    pass
        secs = _best(run)
        out[name] = round(len(dns) / secs) if dns else None
        print(f"  {name}: {len(dns) / secs:,.0f} messages/s ({len(dns)} messages)")

    segments = sum(len(s) for s in streams)
    nbytes = sum(len(d) for s in streams for _, d, _ in s)
    flags = [("http1 fast path", {})]
    if "fast" in Http1Decoder.__init__.__code__.co_varnames:
        flags.append(("http1 h11 only", {"fast": False}))
    for name, kw in flags:
        def run_http(kw: dict[str, Any] = kw) -> None:
            for s in streams:
                dec = Http1Decoder(**kw)
                for direction, data, ts in s:
                    dec.feed(direction, data, ts)
                dec.close("fin", True, None)
        secs = _best(run_http)
        out[name] = round(segments / secs) if segments else None
        print(f"  {name}: {segments / secs:,.0f} segments/s, {nbytes / secs / 1e6:.1f} MB/s "
              f"({len(streams)} connections)")
    return out


def _stand_ins(calls: list[tuple[Any, ...]] | None) -> list[type]:
    """Chefs on DNSLookupChef's and Http1Chef's ports (so the kitchen follows and reassembles
    the same flows) that do nothing but, when ``calls`` is a list, record each call:
    ("data", chef name, flow, direction, bytes, timestamp) or ("close", chef name, flow,
    reason)."""
    from netdumplings.kitchen.chef import DatagramChef, StreamChef

    chefs = bundled_chefs()

    def stand_in(base: type, real: str) -> type:
        class Rec(base):  # type: ignore[misc, valid-type]
            default_ports = chefs[real].default_ports

            def on_data(self, flow: Any, direction: Any, data: bytes, timestamp: float) -> None:
                if calls is not None:
                    calls.append(("data", real, flow, direction, bytes(data), timestamp))

            def on_close(self, flow: Any, reason: Any) -> None:
                if calls is not None:
                    calls.append(("close", real, flow, reason))
        Rec.__name__ = Rec.__qualname__ = f"StandIn{real}"
        return Rec

    return [stand_in(DatagramChef, "DNSLookupChef"), stand_in(StreamChef, "Http1Chef")]


def _record_calls(path: Path, limit: int | None) -> tuple[list[tuple[Any, ...]], int]:
    """Every call the kitchen makes to DNSLookupChef and Http1Chef over the capture, in
    order, made by stand-ins (so flow tracking and reassembly are the kitchen's own).
    Returns (calls, packets read)."""
    calls: list[tuple[Any, ...]] = []
    k = Kitchen("floor", _stand_ins(calls), poke_interval=None, host="bench")
    cook_file(k, path, limit)
    return calls, k.stats.packets


def floor(path: Path, limit: int | None) -> dict[str, Any]:
    """Two floors under the all-chefs kitchen, each next to the bare loop:

    * the DNS and HTTP/1.1 chefs alone, as if the kitchen cost nothing: their recorded calls
      replayed straight into the real chefs, each payload encoded with orjson;
    * the kitchen alone: reading, header decode, flow table and TCP reassembly for the
      flows those two chefs follow, delivered to stand-ins that do nothing.

    If either takes longer than the all-chefs target allows for the whole capture (4x the
    bare loop, i.e. 0.25x), work on the other cannot meet the target."""
    from chefs.dns import DNSLookupChef
    from chefs.http1 import Http1Chef
    from netdumplings.kitchen.chef import iter_payloads
    from netdumplings.wire.dumpling import encode

    from .kitchen import bare_loop

    calls, packets = _record_calls(path, limit)
    flows = {id(call[2]): call[2] for call in calls}.values()

    def replay(only: str | None = None) -> tuple[int, int]:
        real = {"DNSLookupChef": DNSLookupChef(), "Http1Chef": Http1Chef()}
        for flow in flows:  # each replay starts with fresh per-flow decoders
            for chef in real.values():
                flow.state.pop(chef.name, None)
        n = nbytes = 0
        for call in calls:
            if only is not None and call[1] != only:
                continue
            chef = real[call[1]]
            if call[0] == "data":
                result = chef.on_data(*call[2:])
            else:
                result = chef.on_close(*call[2:])
            for payload in iter_payloads(result):  # a generator: runs here
                nbytes += len(encode({"payload": payload}))
                n += 1
            if call[0] == "close":  # as the kitchen does, after the close's payloads
                call[2].state.pop(chef.name, None)
        return n, nbytes

    out: dict[str, Any] = {"packets": packets, "calls": len(calls)}
    best = {"bare": float("inf"), "both": float("inf"), "DNSLookupChef": float("inf"),
            "Http1Chef": float("inf"), "kitchen": float("inf")}
    for _ in range(3):
        for what in best:
            gc.collect()
            t = time.perf_counter()
            if what == "bare":
                bare_loop(path, limit)
            elif what == "kitchen":
                kitchen_loop(path, _stand_ins(None), limit)
            elif what == "both":
                out["payloads"], out["payload_bytes"] = replay()
            else:
                out[f"payloads_{what}"] = replay(what)[0]
            best[what] = min(best[what], time.perf_counter() - t)
    bare, both = best["bare"], best["both"]
    out.update(bare_seconds=round(bare, 3), chefs_seconds=round(both, 3),
               dns_seconds=round(best["DNSLookupChef"], 3),
               http1_seconds=round(best["Http1Chef"], 3),
               kitchen_seconds=round(best["kitchen"], 3),
               budget_seconds=round(bare * 4, 3), ceiling_ratio=round(bare / both, 4))
    print(f"  DNS + HTTP/1.1 chefs alone, {packets:,} packets ({len(calls):,} calls, "
          f"{out['payloads']:,} payloads): {both:.2f} s "
          f"(DNSLookupChef {best['DNSLookupChef']:.2f} s, Http1Chef {best['Http1Chef']:.2f} s)")
    print(f"  bare RawPcapReader loop: {bare:.2f} s; the 0.25x target leaves "
          f"{bare * 4:.2f} s for everything")
    print(f"  the kitchen alone (same flows, stand-in chefs that do nothing): "
          f"{best['kitchen']:.2f} s = {bare / best['kitchen']:.3f}x")
    print(f"  best all-chefs ratio with a kitchen that costs nothing and no other chef: "
          f"{bare / both:.3f}x")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.chefs", description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=100_000, help="packets of the mixed capture")
    ap.add_argument("--capture-packets", type=int, default=1_000_000,
                    help="size of the cached mixed capture to take them from")
    ap.add_argument("--no-shares", action="store_true", help="skip the profiled kitchen run")
    ap.add_argument("--floor", action="store_true",
                    help="also replay the DNS and HTTP/1.1 chefs' calls over the whole capture "
                         "without the kitchen: the best all-chefs ratio any kitchen could reach")
    args = ap.parse_args(argv)
    path, _ = mixed_capture(args.capture_packets, print)
    if not args.no_shares:
        secs, shares = chef_shares(path, args.packets)
        print(f"all default chefs, {args.packets:,} packets: {secs:.2f} s under the profiler")
        for chef, share in shares.items():
            print(f"  {chef:16s} {share * 100:5.1f} %")
        print(f"  {'(kitchen, rest)':16s} {(1 - sum(shares.values())) * 100:5.1f} %")
    print(f"decoders alone, messages from the first {args.packets:,} packets:")
    decoders(path, args.packets)
    if args.floor:
        print("the chefs' floor, whole capture:")
        floor(path, None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
