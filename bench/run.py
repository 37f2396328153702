"""The benchmark runner: ``python -m bench [kitchen|workers|live|live-veth|hub|hub-plain|all] [options]``.

Prints a table per benchmark and writes everything measured (plus the machine and versions)
to ``bench/results/<benchmark>-<time>.json``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _machine() -> dict[str, Any]:
    from importlib.metadata import version

    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                            "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for pkg in ("netdumplings", "scapy", "websockets", "orjson", "msgpack"):
        try:
            info[pkg] = version(pkg)
        except Exception:
            pass
    return info


def table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> str:
    """A plain-text table of ``rows`` (dicts) with ``cols`` as (key, heading)."""
    def fmt(v: Any) -> str:
        if isinstance(v, list):
            return " / ".join(fmt(x) for x in v)
        if isinstance(v, float):
            return f"{v:,.3f}" if v < 10 else f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return "" if v is None else str(v)
    cells = [[h for _, h in cols]] + [[fmt(r.get(k)) for k, _ in cols] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


KITCHEN_COLS = [("name", "configuration"), ("packets", "packets"), ("pps", "packets/s"),
                ("baseline_pps", "bare RawPcapReader/s"), ("ratio", "ratio"),
                ("dumplings", "dumplings"), ("mb_per_s", "MB/s reassembled")]
WORKERS_COLS = [("name", "configuration"), ("packets", "packets"), ("pps", "packets/s"),
                ("baseline_pps", "bare RawPcapReader/s"), ("ratio", "ratio"),
                ("us_per_packet", "us/packet"), ("reader_cpu_us", "reader CPU us/pkt"),
                ("workers_cpu_us", "workers CPU us/pkt"), ("dumplings", "dumplings"),
                ("load_after", "load avg after")]
VETH_COLS = [("workers", "workers"), ("rate", "target/s"), ("send_rate", "sent/s"),
             ("sent", "sent"), ("seen", "seen"), ("loss_pct", "loss %"),
             ("kernel_drops", "kernel drops"), ("per_worker", "by worker"),
             ("interface_drops", "by interface"), ("sender_tx_dropped", "sender drops"),
             ("unaccounted", "unaccounted")]
LIVE_COLS = [("rate", "target/s"), ("send_rate", "sent/s"), ("sent", "sent"), ("seen", "seen"),
             ("loss_pct", "loss %"), ("kernel_drops", "kernel drops")]
HUB_COLS = [("eaters", "eaters"), ("encoding", "encoding"), ("paced_rate", "paced/s"),
            ("sent", "sent"), ("received_min", "min received"), ("loss_pct_max", "loss %"),
            ("outbox_dropped", "of which kitchen outbox"),
            ("hub_reported_missed", "of which hub queues"), ("out_of_order", "reordered"), ("per_eater_dumplings_per_s_min", "per eater/s"),
            ("latency_ms_p50", "p50 ms"), ("latency_ms_p99", "p99 ms"),
            ("hub_rss_mb_peak", "hub RSS peak MB")]
PLAIN_COLS = [("hub", "hub"), ("eaters", "eaters"), ("sent", "sent"),
              ("received_min", "min received"), ("out_of_order", "reordered"),
              ("per_eater_dumplings_per_s_min", "per eater/s (best)"), ("rounds", "all rounds"),
              ("vs_0.5.1", "vs 0.5.1"), ("hub_cpu_us_per_dumpling_out", "hub CPU us/dumpling out"),
              ("hub_rss_mb_peak", "hub RSS peak MB")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["kitchen", "workers", "live", "live-veth", "hub", "hub-plain",
                                    "all"])
    p.add_argument("--veth-rates", default="20000,40000,80000",
                   help="live-veth: packets/s tcpreplay sends (default: %(default)s)")
    p.add_argument("--veth-packets", type=int, default=150_000,
                   help="live-veth: packets per run (default: %(default)s)")
    p.add_argument("--workers", default="1,2",
                   help="workers: the worker counts to compare (default: %(default)s)")
    p.add_argument("--reps", type=int, default=1,
                   help="workers: runs of each configuration, best kept (default: "
                        "%(default)s)")
    p.add_argument("--limit", type=int, default=None,
                   help="workers: read only the first N packets of the capture")
    p.add_argument("--packets", type=int, default=1_000_000,
                   help="packets in the mixed capture (default: %(default)s)")
    p.add_argument("--sample", type=int, default=20_000,
                   help="packets for the dissect-everything kitchen (default: %(default)s)")
    p.add_argument("--tcp-packets", type=int, default=200_000,
                   help="packets in the TCP-heavy capture (default: %(default)s)")
    p.add_argument("--profile", action="store_true",
                   help="also write pyinstrument profiles of the kitchen to bench/results/")
    p.add_argument("--rates", default="5000,20000,50000,100000",
                   help="live: packets/s to try (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=2.0,
                   help="live: seconds per rate (default: %(default)s)")
    p.add_argument("--dumplings", type=int, default=300_000,
                   help="hub: dumplings per flat-out phase (default: %(default)s)")
    p.add_argument("--paced", type=int, default=25_000,
                   help="hub: dumplings in the paced 5,000/s phases (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3,
                   help="hub-plain: rounds, alternating the hubs (default: %(default)s)")
    p.add_argument("--eater-procs", type=int, default=2,
                   help="hub-plain: processes the 10 eaters are spread over (default: %(default)s)")
    p.add_argument("--nd05", type=Path,
                   help="hub-plain: bin/ of a venv with netdumplings 0.5.1 (default: .venv-nd05/bin)")
    p.add_argument("--only", choices=["ours", "0.5.1"],
                   help="hub-plain: measure one hub only")
    p.add_argument("--out", type=Path, help="JSON file to write (default: bench/results/)")
    args = p.parse_args(argv)

    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              "machine": _machine()}
    todo = ["kitchen", "live", "hub", "hub-plain"] if args.what == "all" else [args.what]
    out_tables = []
    for what in todo:
        if what == "kitchen":
            from . import kitchen
            r = kitchen.run(args.packets, args.sample, args.tcp_packets, _log,
                            RESULTS if args.profile else None)
            out_tables.append("kitchen (" + r["capture_origin"] + ")\n" +
                              table(r["rows"], KITCHEN_COLS))
        elif what == "workers":
            from . import workers
            r = workers.run(args.packets, tuple(int(x) for x in args.workers.split(",")),
                            args.reps, args.limit, _log)
            out_tables.append("workers (" + r["capture_origin"] + ")\n" +
                              table(r["rows"], WORKERS_COLS) + "\n" +
                              ", ".join(f"{k} {v}" for k, v in r["summary"].items()))
        elif what == "live-veth":
            from . import live_veth
            r = live_veth.run(tuple(int(x) for x in args.veth_rates.split(",")),
                              args.veth_packets,
                              tuple(int(x) for x in args.workers.split(",")), _log)
            out_tables.append("live on a veth (tcpreplay), all default chefs\n" +
                              table(r["rows"], VETH_COLS))
        elif what == "live":
            from . import live
            r = live.run(tuple(int(x) for x in args.rates.split(",")), args.seconds, _log)
            out_tables.append("live on lo, PacketCountChef\n" + table(r["rows"], LIVE_COLS))
        elif what == "hub-plain":
            from . import hub_plain
            r = hub_plain.run(args.dumplings, args.rounds, args.eater_procs, args.nd05, _log,
                              args.only)
            out_tables.append("hub, plain clients (one dumpling per message), best of "
                              f"{args.rounds} rounds\n" + table(r["best"], PLAIN_COLS))
        else:
            from . import hub
            r = hub.run(args.dumplings, args.paced, _log)
            out_tables.append("hub (nd-hub as it is)\n" + table(r["rows"], HUB_COLS)
                              + f"\nhub RSS: {r['hub_rss_mb_start']} MB at start, "
                              f"{r['hub_rss_mb_first_phase_after']} MB after the first phase, "
                              f"{r['hub_rss_mb_last_phase_after']} MB after "
                              f"{r['dumplings_through_hub']:,} dumplings")
        result[what] = r
    print("\n\n".join(out_tables))
    target = args.out or RESULTS / f"{args.what}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2, default=str))
    _log(f"results written to {target}")
    return 0
