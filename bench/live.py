"""Live capture on ``lo``: packets sent at a paced rate vs packets the kitchen saw.

A separate process sends UDP datagrams to a loopback port at the requested rate (in 1 ms
slices, so the pacing holds at 100k/s without a sleep per packet); this process runs a
kitchen with PacketCountChef on a ``LiveSource`` filtered to that port. Kernel drops come
from the capture socket's PACKET_STATISTICS (``LiveSource.stats()``). Needs root.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.kitchen.registry import bundled_chefs
from netdumplings.capture.sources import CaptureError, LiveSource

SENDER = r"""
import socket, sys, time
port, rate, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
payload = b"netdumplings-bench " * 3
addr = ("127.0.0.1", port)
sent = 0
t0 = time.perf_counter()
while sent < count:
    due = min(count, int((time.perf_counter() - t0) * rate) + 1)
    while sent < due:
        try:
            s.sendto(payload, addr)
        except BlockingIOError:
            continue
        sent += 1
    if sent < count:
        time.sleep(0.0005)
print(sent, time.perf_counter() - t0)
"""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_rate(rate: int, seconds: float) -> dict[str, Any]:
    port = _free_udp_port()
    # a receiver so the datagrams are delivered (no ICMP port unreachable on the wire)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", port))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sink.setblocking(False)
    source = LiveSource(["lo"], f"udp and dst port {port}", poll_timeout=0.05)
    kitchen = Kitchen("bench-live", [bundled_chefs()["PacketCountChef"]], poke_interval=None,
                      host="bench")
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                while True:
                    sink.recv(2048)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                return

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    runner = threading.Thread(target=kitchen.run, args=(source,),
                              kwargs={"stop": stop.is_set}, daemon=True)
    runner.start()
    count = int(rate * seconds)
    try:
        out = subprocess.run([sys.executable, "-c", SENDER, str(port), str(rate), str(count)],
                             capture_output=True, text=True, check=True, timeout=seconds * 5 + 30)
        sent, send_secs = out.stdout.split()
        sent, send_secs = int(sent), float(send_secs)
        # wait for the kitchen to catch up (bounded): stop when nothing new for 0.5 s
        deadline = time.monotonic() + 10
        last, still = -1, time.monotonic()
        while time.monotonic() < deadline:
            seen = kitchen.stats.packets
            if seen >= sent:
                break
            if seen != last:
                last, still = seen, time.monotonic()
            elif time.monotonic() - still > 0.5:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(5)
        st = source.stats()
        source.close()
        sink.close()
        drainer.join(2)
    seen = kitchen.stats.packets
    return {"rate": rate, "sent": sent, "send_rate": round(sent / send_secs),
            "seen": seen, "lost": sent - seen,
            "loss_pct": round(100.0 * (sent - seen) / sent, 3) if sent else 0.0,
            "kernel_packets": st["kernel_packets"], "kernel_drops": st["kernel_drops"]}


def run(rates: tuple[int, ...] = (5_000, 20_000, 50_000, 100_000), seconds: float = 2.0,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    log(f"live benchmark on lo: {', '.join(f'{r:,}/s' for r in rates)}, "
        f"{seconds:g} s each (bounded: rate x seconds packets)")
    rows = []
    for rate in rates:
        try:
            row = one_rate(rate, seconds)
        except CaptureError as exc:
            log(f"  live capture not possible: {exc}")
            return {"skipped": str(exc), "rows": rows}
        rows.append(row)
        log(f"  {rate:,}/s: sent {row['sent']:,} (at {row['send_rate']:,}/s), seen "
            f"{row['seen']:,}, loss {row['loss_pct']}%, kernel drops {row['kernel_drops']:,}")
    return {"rows": rows, "seconds_per_rate": seconds}
