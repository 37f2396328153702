"""The hub as it is: one kitchen (Kitchen -> HubSender) to 1 and 10 eaters.

Three processes, as in production: ``nd-hub``; this process as the kitchen (a chef making
one small dumpling per packet, the real Kitchen and HubSender, batches on the link); the
eaters (``bench.hub_eater``). Measured: dumplings/s each eater received, loss (sent -
received, and what the hub says it dropped), order, kitchen-to-eater latency p50/p99 at a
paced 5,000/s (JSON and msgpack), and the hub's RSS (sampled every 20 ms) after each phase.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import orjson

from netdumplings.kitchen.chef import DumplingChef
from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.capture.packet import Packet
from netdumplings.wire.sender import HubSender

BENCH = Path(__file__).resolve().parent


class BenchChef(DumplingChef):
    """One dumpling per packet, about the size of a DNS lookup summary."""

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        self.n = 0

    def packet_handler(self, packet: Any) -> dict[str, Any]:
        self.n += 1
        return {"n": self.n, "summary": "A steam42.example -> 203.0.113.7 (NOERROR)",
                "client": "192.0.2.10:40000", "server": "198.51.100.53:53"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"hub not listening on {port}")


class RssSampler:
    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self.current = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.current = self.proc.memory_info().rss
            except Exception:
                return
            self.peak = max(self.peak, self.current)
            time.sleep(0.02)

    def reset_peak(self) -> None:
        self.peak = self.current

    def stop(self) -> None:
        self._stop.set()
        self._t.join(1)


def _produce(in_port: int, count: int, rate: float | None) -> dict[str, Any]:
    """Make ``count`` dumplings through Kitchen + HubSender (paced at ``rate``/s if given)."""
    sender = HubSender("127.0.0.1", in_port, {"kitchen_name": "bench", "chefs": ["BenchChef"]})
    sender.start()
    if not sender.connected.wait(10):
        raise RuntimeError("kitchen could not connect to the hub")
    # Like nd-sniff reading a file: the kitchen waits for room in its outbox rather than
    # drop, so a flat-out phase measures what the hub relays, not how fast this process can
    # overflow its own outbox (a live kitchen drops and counts instead).
    deadline = time.monotonic() + 120 + count / 1000

    def more_time() -> bool:
        return time.monotonic() < deadline
    kitchen = Kitchen("bench", [BenchChef], sink=lambda d, b: sender.put(b, wait=more_time),
                      poke_interval=None, host="bench")
    pkt = Packet(b"\x00" * 60, time.time())
    process = kitchen.process
    t0 = time.time()
    if rate is None:
        for _ in range(count):
            process(pkt)
    else:
        made = 0
        start = time.perf_counter()
        while made < count:
            due = min(count, int((time.perf_counter() - start) * rate) + 1)
            while made < due:
                process(pkt)
                made += 1
            time.sleep(0.0005)
    t_made = time.time()
    flushed = sender.close(timeout=60)
    return {"produced": kitchen.stats.dumplings, "t0": t0, "produce_seconds": t_made - t0,
            "flushed": flushed, "outbox_dropped": sender.outbox.dropped_total}


def phase(in_port: int, out_port: int, eaters: int, encoding: str, count: int,
          rate: float | None, rss: RssSampler, log: Callable[[str], None]) -> dict[str, Any]:
    eater = subprocess.Popen(
        [sys.executable, "-m", "bench.hub_eater", f"ws://127.0.0.1:{out_port}", str(eaters),
         encoding, str(count)], cwd=BENCH.parent, stdout=subprocess.PIPE, text=True)
    try:
        line = eater.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"eaters did not start: {line!r}")
        rss.reset_peak()
        prod = _produce(in_port, count, rate)
        out, _ = eater.communicate(timeout=120 + count / 1000)
    finally:
        if eater.poll() is None:
            eater.kill()
    results = orjson.loads(out.strip().splitlines()[-1])
    received = [r["received"] for r in results]
    rates = [r["received"] / (r["last"] - prod["t0"]) if r["last"] else 0 for r in results]
    p50 = max((r["latency_ms_p50"] or 0) for r in results)
    p99 = max((r["latency_ms_p99"] or 0) for r in results)
    row = {"eaters": eaters, "encoding": encoding, "paced_rate": rate, "sent": prod["produced"],
           "received_min": min(received), "received_total": sum(received),
           "lost_max": prod["produced"] - min(received),
           "loss_pct_max": round(100 * (prod["produced"] - min(received)) / prod["produced"], 3),
           "hub_reported_missed": sum(r["hub_reported_missed"] for r in results),
           "out_of_order": sum(r["out_of_order"] for r in results),
           "per_eater_dumplings_per_s_min": round(min(rates)),
           "kitchen_produce_per_s": round(prod["produced"] / prod["produce_seconds"]),
           "latency_ms_p50": p50, "latency_ms_p99": p99,
           "hub_rss_mb_peak": round(rss.peak / 2**20, 1),
           "hub_rss_mb_after": round(rss.current / 2**20, 1),
           "outbox_dropped": prod["outbox_dropped"]}
    log(f"  {eaters} eater(s) {encoding} {'paced ' + format(int(rate), ',') + '/s' if rate else 'flat out'}: "
        f"sent {row['sent']:,}, min received {row['received_min']:,} "
        f"({row['loss_pct_max']}% lost), {row['per_eater_dumplings_per_s_min']:,}/s per eater, "
        f"p50 {p50} ms p99 {p99} ms, hub RSS peak {row['hub_rss_mb_peak']} MB")
    return row


def run(count: int = 300_000, paced_count: int = 25_000, log: Callable[[str], None] = print
        ) -> dict[str, Any]:
    in_port, out_port = _free_port(), _free_port()
    exe = Path(sys.executable).parent / "nd-hub"
    cmd = ([str(exe)] if exe.exists() else [sys.executable, "-m", "netdumplings.cli.hub"]) + [
        "--in-port", str(in_port), "--out-port", str(out_port), "--status-freq", "3600",
        "--metrics-port", "0"]
    hub = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    rows = []
    try:
        _wait_port(in_port)
        _wait_port(out_port)
        rss = RssSampler(hub.pid)
        start_rss = rss.proc.memory_info().rss
        log(f"hub benchmark: nd-hub pid {hub.pid}, RSS at start {start_rss / 2**20:.1f} MB")
        # Warm-up, not reported: the first burst into a fresh hub process pays for its
        # heap growing and its first connections, which no long-running hub does again.
        log("  warm-up: 1 eater, json, 50,000 dumplings (not reported)")
        phase(in_port, out_port, 1, "json", min(count, 50_000), None, rss, lambda _: None)
        plan = [(1, "json", count, None), (1, "msgpack", count, None),
                (10, "json", count // 3, None), (10, "msgpack", count // 3, None),
                (1, "json", paced_count, 5000.0), (10, "json", paced_count, 5000.0),
                (1, "msgpack", paced_count, 5000.0), (10, "msgpack", paced_count, 5000.0),
                (1, "json", count, None)]  # again: does RSS grow with what has passed?
        for eaters, enc, n, rate in plan:
            rows.append(phase(in_port, out_port, eaters, enc, n, rate, rss, log))
        rss.stop()
    finally:
        hub.terminate()
        try:
            hub.wait(10)
        except subprocess.TimeoutExpired:
            hub.kill()
    total = sum(r["sent"] for r in rows)
    return {"rows": rows, "hub_rss_mb_start": round(start_rss / 2**20, 1),
            "dumplings_through_hub": total,
            "hub_rss_mb_first_phase_after": rows[0]["hub_rss_mb_after"],
            "hub_rss_mb_last_phase_after": rows[-1]["hub_rss_mb_after"]}
