"""``nd-sniff --workers N`` on a capture file, as ratios to a bare read loop in the same run.

All default chefs over the mixed capture, with one kitchen (``--workers 1``: the plain
``Kitchen``) and with ``ShardedKitchen`` of 2 (or more) workers, each run right after a
bare ``RawPcapReader`` loop over the same file, the configurations interleaved round by
round (a change of load on a shared machine hits them all), each round's ratios to one
baseline, the median of its bare loops. Per row the run with the median ratio, with the CPU time of the reader and of the workers (a packet) and how many
packets each worker cooked; the speedup is the median of the rounds' (each round's runs
compared with each other only). Also measured, for the scaling model
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

    before = os.times()
    if workers == 1:
        k: Any = Kitchen("bench", chefs, sink=sink, poke_interval=5.0, host="bench")
    else:
        k = ShardedKitchen(workers, "bench", chefs, sink=sink, poke_interval=5.0, host="bench")
        k.start()
    cook_file(k, path, limit)
    if getattr(k, "died", None):
        raise RuntimeError(f"workers died: {k.died}")
    after = os.times()   # the workers are joined: their CPU time is in children_*
    n = k.stats.packets
    split = [k.worker_packets.get(i, 0) for i in range(workers)] if workers > 1 else [n]
    return {"packets": n, "dumplings": got[0], "dumpling_bytes": got[1],
            "reader_cpu_us": round((after.user + after.system - before.user
                                    - before.system) / n * 1e6, 2),
            "workers_cpu_us": round((after.children_user + after.children_system
                                     - before.children_user - before.children_system)
                                    / n * 1e6, 2),
            "split": split}


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
    runs: list[list[dict[str, Any]]] = [[] for _ in configs]
    bare_loop(path, limit)   # the capture into the page cache before the first round
    for rnd in range(reps):
        bares: list[float] = []
        for c, (name, n, chef_set) in enumerate(configs):
            base_s, base_n = _timed(lambda: bare_loop(path, limit))
            secs, res = _timed(lambda: one(path, n, chef_set, limit))
            bares.append(base_n / base_s)
            runs[c].append({"seconds": secs, "pps": res["packets"] / secs, "res": res,
                            "bare_before": base_n / base_s, "load": os.getloadavg()[0]})
        # One baseline a round, the median of its bare loops: the loop right after a run
        # varied by +-7 % (memory the run left, another process), and the configurations
        # of a round are minutes apart at most.
        base_pps = sorted(bares)[len(bares) // 2]
        for c, (name, n, chef_set) in enumerate(configs):
            run = runs[c][-1]
            run["baseline_pps"] = base_pps
            run["ratio"] = run["pps"] / base_pps
            res = run["res"]
            log(f"  round {rnd + 1}, {name}: {run['pps']:,.0f} packets/s = "
                f"{run['ratio']:.4f}x bare ({base_pps:,.0f}/s; the loop right before it "
                f"{run['bare_before']:,.0f}/s), load {run['load']:.2f}; CPU us a packet: "
                f"reader {res['reader_cpu_us']}, workers {res['workers_cpu_us']}; packets "
                f"per worker {res['split']}")
    for (name, n, _chefs), mine in zip(configs, runs):
        best = sorted(mine, key=lambda r: r["ratio"])[len(mine) // 2]   # the median run
        res = best["res"]
        secs = best["seconds"]
        row = {"name": name, "workers": n, "packets": res["packets"],
               "seconds": round(secs, 2), "pps": round(res["packets"] / secs),
               "baseline_pps": round(best["baseline_pps"]), "ratio": round(best["ratio"], 4),
               "dumplings": res["dumplings"], "us_per_packet": round(secs / res["packets"] * 1e6, 2),
               "reader_cpu_us": res["reader_cpu_us"], "workers_cpu_us": res["workers_cpu_us"],
               "split": res["split"], "load_after": round(best["load"], 2), "runs": reps}
        rows.append(row)
    by = {r["workers"]: (r, mine) for r, mine in zip(rows, runs)
          if r["dumplings"] or r["workers"] == 1}
    summary: dict[str, Any] = {}
    if 1 in by:
        one_row, one_runs = by[1]
        for n, (r, mine) in by.items():
            if n != 1:
                per_round = [m["ratio"] / o["ratio"] for m, o in zip(mine, one_runs)]
                summary[f"speedup_{n}_workers"] = round(sorted(per_round)[len(per_round) // 2],
                                                        3)   # the median round
                summary[f"speedup_{n}_workers_by_round"] = [round(x, 3) for x in per_round]
    summary["target_2_workers"] = 1.7
    log("  " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    return {"capture": str(path), "capture_origin": origin, "rows": rows, "summary": summary,
            "cores": len(os.sched_getaffinity(0)), "when": time.strftime("%H:%M:%S")}
