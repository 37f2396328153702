"""Kitchen throughput on a capture file, as ratios to a bare ``RawPcapReader`` loop.

Everything runs in this one process, one configuration after the other, each with the
baseline measured right before it: the figure that matters is the ratio, which does not
depend on how fast the machine is.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from netdumplings.kitchen.chef import DumplingChef, StreamChef
from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.kitchen.registry import bundled_chefs
from netdumplings.capture.sources import PcapSource

from . import synth

BENCH = Path(__file__).resolve().parent
DATA = BENCH / "data"
#: The shared captures folder sits beside the repository (``../shared``) on the machines
#: that have it; elsewhere (CI) the benchmark makes its own capture.
SHARED_BULK = BENCH.parent.parent / "shared" / "captures" / "bulk" / "make_bulk.py"


def mixed_capture(packets: int, log: Callable[[str], None]) -> tuple[Path, str]:
    """The mixed capture of ``packets`` frames, cached under bench/data/ -> (path, origin)."""
    if SHARED_BULK.exists():
        out = DATA / f"shared-{packets}"
        path = out / "mixed-1m.pcap"   # the generator's fixed name, whatever the count
        if not path.exists():
            log(f"generating {packets} packets with {SHARED_BULK} ...")
            subprocess.run([sys.executable, str(SHARED_BULK), str(out), "shared", str(packets)],
                           check=True, stdout=subprocess.DEVNULL)
        return path, "shared bulk/make_bulk.py"
    path = DATA / f"synth-mixed-{packets}.pcap"
    if not path.exists():
        log(f"{SHARED_BULK} not found: generating a synthetic mixed capture ({packets}) ...")
        synth.write(path, "mixed", packets)
    return path, "bench/synth.py mixed"


def tcp_heavy_capture(packets: int, log: Callable[[str], None]) -> Path:
    path = DATA / f"synth-tcp-heavy-{packets}.pcap"
    if not path.exists():
        log(f"generating a TCP-heavy capture ({packets} packets) ...")
        synth.write(path, "tcp_heavy", packets)
    return path


# -- the loops measured -------------------------------------------------------------------


def bare_loop(path: Path, limit: int | None = None) -> int:
    """The baseline: scapy's raw reader, nothing done per record."""
    from scapy.utils import RawPcapReader

    n = 0
    with RawPcapReader(str(path)) as reader:
        for _ in reader:
            n += 1
            if n == limit:
                break
    return n


def source_loop(path: Path, limit: int | None = None, bpf_filter: str | None = None) -> int:
    """Our reader alone: records to (undecoded) Packets. With ``bpf_filter`` (-f) the
    records read are counted, passed or not: the filter's cost per record."""
    n = 0
    src = PcapSource(path, bpf_filter=bpf_filter)
    try:
        for _ in src:
            n += 1
            if n == limit:
                break
    finally:
        src.close()
    return src.packets if bpf_filter else n


class _Limited:
    def __init__(self, src: PcapSource, limit: int | None) -> None:
        self.src, self.limit = src, limit

    def __iter__(self):
        if self.limit is None:
            yield from self.src
            return
        n = 0
        for p in self.src:
            yield p
            n += 1
            if n >= self.limit:
                return


def cook_file(k: Any, path: Path, limit: int | None = None) -> None:
    """Run kitchen ``k`` (a Kitchen, or a started ShardedKitchen) over the first ``limit``
    packets of ``path`` and finish it, as nd-sniff -r does."""
    src = PcapSource(path)
    try:
        k.run(_Limited(src, limit))
        k.finish()
    finally:
        src.close()


def kitchen_loop(path: Path, chefs: list, limit: int | None = None) -> dict[str, Any]:
    """The real nd-sniff path: PcapSource -> Kitchen.run -> chefs -> encoded dumplings."""
    sink_bytes = [0]

    def sink(dumpling: dict, data: bytes) -> None:
        sink_bytes[0] += len(data)

    k = Kitchen("bench", chefs, sink=sink, poke_interval=5.0, host="bench")
    cook_file(k, path, limit)
    return {"packets": k.stats.packets, "dumplings": k.stats.dumplings,
            "dumpling_bytes": sink_bytes[0], "chef_errors": k.stats.chef_errors,
            "kitchen": k}


class ByteCountChef(StreamChef):
    """The cheapest possible stream chef: counts reassembled bytes (framework cost only)."""

    default_ports = (80,)

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        self.bytes = 0

    def on_data(self, flow: Any, direction: Any, data: bytes, timestamp: float) -> None:
        self.bytes += len(data)


class DissectEverythingChef(DumplingChef):
    """What netdumplings 0.5's PacketCountChef did per packet: walk scapy's layers."""

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        self.counts: dict[str, int] = {}

    def packet_handler(self, packet: Any) -> None:
        layer = packet.scapy
        counts = self.counts
        while layer:
            counts[layer.name] = counts.get(layer.name, 0) + 1
            layer = layer.payload


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def default_chefs() -> list[type]:
    """What nd-sniff runs without -c: every bundled chef except the opt-in ones."""
    return [c for c in bundled_chefs().values() if not getattr(c, "opt_in", False)]


def run(packets: int = 1_000_000, sample: int = 20_000, tcp_packets: int = 200_000,
        log: Callable[[str], None] = print, profile_dir: Path | None = None) -> dict[str, Any]:
    mixed, origin = mixed_capture(packets, log)
    heavy = tcp_heavy_capture(tcp_packets, log)
    size = os.path.getsize(mixed)
    rows: list[dict[str, Any]] = []

    def measure(name: str, path: Path, fn: Callable[[], Any], limit: int | None = None,
                reps: int = 3, **extra: Any) -> dict[str, Any]:
        # Baseline and configuration alternate ``reps`` times and the best run of each
        # counts: other work on the machine only ever slows a run down, so the fastest
        # run is the closest to what the code costs.
        best_base = best = None
        result: Any = None
        for _ in range(reps):
            base_s, base_n = _timed(lambda: bare_loop(path, limit))
            secs, res = _timed(fn)
            if best_base is None or base_s < best_base[0]:
                best_base = (base_s, base_n)
            if best is None or secs < best[0]:
                best, result = (secs, res), res
        base_s, base_n = best_base
        secs = best[0]
        n = result["packets"] if isinstance(result, dict) else result
        row = {"name": name, "capture": path.name, "packets": n, "seconds": round(secs, 3),
               "pps": round(n / secs), "baseline_pps": round(base_n / base_s),
               "ratio": round((n / secs) / (base_n / base_s), 3), "runs": reps, **extra}
        if isinstance(result, dict):
            row.update({k: v for k, v in result.items() if k != "kitchen"})
        rows.append(row)
        log(f"  {name}: {row['pps']:,} packets/s = {row['ratio']:.3f}x bare "
            f"({row['baseline_pps']:,}/s), best of {reps}")
        return row

    log(f"kitchen benchmark: {mixed} ({packets:,} packets, {size / 1e6:.1f} MB, {origin})")
    measure("PcapSource only (read + lazy Packet)", mixed, lambda: source_loop(mixed))
    measure("PcapSource with -f 'tcp' (libpcap filter per record)", mixed,
            lambda: source_loop(mixed, bpf_filter="tcp"))
    measure("kitchen: PacketCountChef", mixed,
            lambda: kitchen_loop(mixed, [bundled_chefs()["PacketCountChef"]]),
            chefs=["PacketCountChef"])
    names = [c.__name__ for c in default_chefs()]
    measure("kitchen: all default bundled chefs", mixed,
            lambda: kitchen_loop(mixed, default_chefs()), reps=1, chefs=names,
            note="opt-in chefs excluded, as nd-sniff runs them")
    measure("kitchen: dissect everything (0.5 style), sample", mixed,
            lambda: kitchen_loop(mixed, [DissectEverythingChef], sample), limit=sample,
            reps=2, chefs=["DissectEverythingChef"])
    # stream chefs on the TCP-heavy capture: MB/s of reassembled payload
    reassembled = _reassembled_bytes(heavy)
    for chef_cls in (ByteCountChef, bundled_chefs()["Http1Chef"]):
        row = measure(f"kitchen: {chef_cls.__name__} (stream)", heavy,
                      lambda cls=chef_cls: kitchen_loop(heavy, [cls]), chefs=[chef_cls.__name__])
        row["reassembled_mb"] = round(reassembled / 1e6, 2)
        row["mb_per_s"] = round(reassembled / 1e6 / row["seconds"], 1)
        log(f"    {row['mb_per_s']} MB/s of reassembled payload")
    sample_row = rows[3]
    pc_row = rows[1]
    summary = {
        "packetcount_ratio": pc_row["ratio"], "packetcount_target": 0.5,
        "all_chefs_ratio": rows[2]["ratio"], "all_chefs_target": 0.25,
        "packetcount_vs_dissect_everything": round(pc_row["pps"] / sample_row["pps"], 1),
    }
    if profile_dir is not None:
        summary["profiles"] = _profiles(mixed, heavy, profile_dir, log)
    return {"capture": str(mixed), "capture_origin": origin, "capture_bytes": size,
            "tcp_heavy_capture": str(heavy), "rows": rows, "summary": summary}


def _reassembled_bytes(path: Path) -> int:
    """Payload bytes a ByteCountChef sees on ``path`` (measured once, outside the timing)."""
    k = Kitchen("count", [], poke_interval=None, host="bench")
    chef = ByteCountChef(kitchen=k)
    src = PcapSource(path)
    try:
        for p in src:
            k.process(p)
        k.finish()
    finally:
        src.close()
    return chef.bytes


def _profiles(mixed: Path, heavy: Path, out: Path, log: Callable[[str], None]) -> dict[str, str]:
    """pyinstrument text profiles of the kitchen configurations (if pyinstrument is there)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        log("pyinstrument not installed: no profiles")
        return {}
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, path, chefs, limit in (
            ("packetcount", mixed, [bundled_chefs()["PacketCountChef"]], 300_000),
            ("all-chefs", mixed, default_chefs(), 100_000),
            ("http1-stream", heavy, [bundled_chefs()["Http1Chef"]], None)):
        prof = Profiler(interval=0.0005)
        prof.start()
        kitchen_loop(path, chefs, limit)
        prof.stop()
        target = out / f"profile-{name}.txt"
        target.write_text(prof.output_text(unicode=False, color=False))
        written[name] = str(target)
        log(f"  profile: {target}")
    return written
