"""``nd-sniff --workers N`` on a capture file, as ratios to a bare read loop in the same run.

All default chefs over the mixed capture, with one kitchen (``--workers 1``: the plain
``Kitchen``) and with ``ShardedKitchen`` of 2 (or more) workers, each configuration right
after a bare ``RawPcapReader`` loop over the same file. Also measured, for the scaling model
(docs/performance.md): the reader alone (read, shard, batch, send to workers that run no
chef) and the per-dumpling cost of the way back (workers -> reader -> sink).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from netdumplings.kitchen.chef import DumplingChef
from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.kitchen.workers import ShardedKitchen

from .kitchen import _timed, bare_loop, cook_file, default_chefs, mixed_capture


class NothingChef(DumplingChef):
    """Runs in every worker and does nothing: the workers only take their packets."""

    shard = "flows"


def one(path: Path, workers: int, chefs: list[type], limit: int | None) -> dict[str, Any]:
    """The nd-sniff -r path with N workers (N = 1: the plain Kitchen), sink counting bytes."""
    got = [0, 0]

    def sink(dumpling: dict, data: bytes) -> None:
        got[0] += 1
        got[1] += len(data)

    if workers == 1:
        k: Any = Kitchen("bench", chefs, sink=sink, poke_interval=5.0, host="bench")
    else:
        k = ShardedKitchen(workers, "bench", chefs, sink=sink, poke_interval=5.0, host="bench")
        k.start()
    cook_file(k, path, limit)
    if getattr(k, "died", None):
        raise RuntimeError(f"workers died: {k.died}")
    return {"packets": k.stats.packets, "dumplings": got[0], "dumpling_bytes": got[1]}


def run(packets: int = 1_000_000, workers: tuple[int, ...] = (1, 2), reps: int = 1,
        limit: int | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    path, origin = mixed_capture(packets, log)
    chefs = default_chefs()
    log(f"workers benchmark: {path} ({origin}), all default chefs, workers {workers}, "
        f"{reps} run(s) each, load average {os.getloadavg()[0]:.2f} at start")
    rows: list[dict[str, Any]] = []
    configs: list[tuple[str, int, list[type]]] = [
        (f"kitchen, all default chefs, --workers {n}", n, chefs) for n in workers]
    configs.append(("reader alone (--workers 2, workers run no chef: read, shard, send)", 2,
                    [NothingChef]))
    for name, n, chef_set in configs:
        best_base = best = None
        for _ in range(reps):
            base_s, base_n = _timed(lambda: bare_loop(path, limit))
            secs, res = _timed(lambda: one(path, n, chef_set, limit))
            if best_base is None or base_s < best_base[0]:
                best_base = (base_s, base_n)
            if best is None or secs < best[0]:
                best = (secs, res)
        assert best is not None and best_base is not None
        secs, res = best
        base_pps = best_base[1] / best_base[0]
        row = {"name": name, "workers": n, "packets": res["packets"],
               "seconds": round(secs, 2), "pps": round(res["packets"] / secs),
               "baseline_pps": round(base_pps), "ratio": round(res["packets"] / secs / base_pps, 4),
               "dumplings": res["dumplings"], "us_per_packet": round(secs / res["packets"] * 1e6, 2),
               "load_after": round(os.getloadavg()[0], 2), "runs": reps}
        rows.append(row)
        log(f"  {name}: {row['pps']:,} packets/s = {row['ratio']:.4f}x bare "
            f"({row['baseline_pps']:,}/s), {row['dumplings']:,} dumplings, load "
            f"{row['load_after']}")
    by = {r["workers"]: r for r in rows if r["dumplings"] or r["workers"] == 1}
    summary: dict[str, Any] = {}
    if 1 in by:
        for n, r in by.items():
            if n != 1:
                summary[f"speedup_{n}_workers"] = round(r["ratio"] / by[1]["ratio"], 3)
    summary["target_2_workers"] = 1.7
    log("  " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    return {"capture": str(path), "capture_origin": origin, "rows": rows, "summary": summary,
            "cores": len(os.sched_getaffinity(0)), "when": time.strftime("%H:%M:%S")}
