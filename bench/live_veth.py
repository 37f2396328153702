"""Live loss with 1 and N workers: the mixed capture replayed onto a veth (root, tcpreplay).

Two network namespaces made for the run, joined by a veth pair: ``tcpreplay`` (paced with
``--timer=nano``: its default timer spins, and took one of this machine's two cores) sends the
first ``packets`` frames of the mixed capture from one end at a fixed rate; ``nd-sniff -i
<other end> --workers N --print`` (all default chefs, dumplings to /dev/null) captures the
other end. Per rate and worker count: sent (tcpreplay's successful packets), seen (the
kitchen's packet count), and every counted drop from the kitchen's exit summary - kernel
(its sockets' buffers, per worker), by interface (before any socket: the veth's receive
drops, which include the host's backlog-queue drops) - and what no counter explains.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .kitchen import mixed_capture

SUMMARY = re.compile(r"nd-sniff: (\d+) packets, (\d+) dumplings.*?, (\d+) dropped by the "
                     r"kernel(?: \(([\d + ]+) by worker\))?.*?, (\d+) dropped by interface")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def _ns_read(ns: str, path: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", ns, "cat", path], capture_output=True,
                         text=True, timeout=10)
    return int(out.stdout.strip() or 0)


def _packet_sockets(ns: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/packet"],
                         capture_output=True, text=True, timeout=10)
    return max(0, len(out.stdout.strip().splitlines()) - 1)


def _queued(ns: str) -> int:
    """Bytes waiting in the receive buffers of the namespace's packet sockets (Rmem)."""
    out = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/packet"],
                         capture_output=True, text=True, timeout=10)
    lines = out.stdout.strip().splitlines()
    if not lines:
        return 0
    col = lines[0].split().index("Rmem")
    return sum(int(line.split()[col]) for line in lines[1:])


def one_run(ns: dict[str, str], pcap: Path, rate: int, packets: int, workers: int,
            log: Callable[[str], None]) -> dict[str, Any]:
    sniff = [sys.executable, "-m", "netdumplings.cli.sniff", "-i", ns["kif"], "--print",
             "--workers", str(workers), "-p", "5"]
    k = subprocess.Popen(["ip", "netns", "exec", ns["K"], *sniff], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while _packet_sockets(ns["K"]) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        rx0 = _ns_read(ns["K"], f"/sys/class/net/{ns['kif']}/statistics/rx_dropped")
        tx0 = _ns_read(ns["S"], f"/sys/class/net/{ns['sif']}/statistics/tx_dropped")
        rep = subprocess.run(["ip", "netns", "exec", ns["S"], "tcpreplay", "-q", "-i",
                              ns["sif"], f"--pps={rate}", f"--limit={packets}", "--timer=nano",
                              str(pcap)],
                             capture_output=True, text=True, timeout=packets / rate * 4 + 60)
        m = re.search(r"Successful packets:\s+(\d+)", rep.stdout)
        sent = int(m.group(1)) if m else 0
        actual = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", rep.stdout)
        # the kitchen works through what its sockets hold (bounded): what is still queued
        # when it is stopped would be neither seen nor dropped
        deadline = time.monotonic() + 120
        while _queued(ns["K"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        rx = _ns_read(ns["K"], f"/sys/class/net/{ns['kif']}/statistics/rx_dropped") - rx0
        tx = _ns_read(ns["S"], f"/sys/class/net/{ns['sif']}/statistics/tx_dropped") - tx0
        os.killpg(k.pid, signal.SIGINT)
        _, err = k.communicate(timeout=120)
    finally:
        if k.poll() is None:
            os.killpg(k.pid, signal.SIGKILL)
            k.wait(10)
    s = SUMMARY.search(err)
    if s is None:
        raise RuntimeError(f"no summary from nd-sniff: {err[-2000:]}")
    seen, kernel, ifdrop = int(s.group(1)), int(s.group(3)), int(s.group(5))
    counted = kernel + ifdrop + tx
    row = {"workers": workers, "rate": rate, "sent": sent,
           "send_rate": round(float(actual.group(1))) if actual else None, "seen": seen,
           "lost": sent - seen, "loss_pct": round(100.0 * (sent - seen) / sent, 2) if sent else 0,
           "kernel_drops": kernel, "per_worker": s.group(4), "interface_drops": ifdrop,
           "veth_rx_dropped": rx, "sender_tx_dropped": tx,
           "unaccounted": sent - seen - counted, "dumplings": int(s.group(2))}
    log(f"  workers {workers}, {rate:,}/s: sent {sent:,}, seen {seen:,}, loss "
        f"{row['loss_pct']}%, kernel {kernel:,} ({row['per_worker'] or '-'}), by interface "
        f"{ifdrop:,} (veth rx_dropped {rx:,}), sender {tx:,}, unaccounted "
        f"{row['unaccounted']:,}")
    return row


def run(rates: tuple[int, ...] = (20_000, 40_000, 80_000), packets: int = 150_000,
        workers: tuple[int, ...] = (1, 2), log: Callable[[str], None] = print
        ) -> dict[str, Any]:
    if os.geteuid() != 0 or not shutil.which("ip"):
        log("live veth benchmark skipped: needs root and iproute2")
        return {"skipped": "needs root and iproute2", "rows": []}
    if not shutil.which("tcpreplay"):
        log("live veth benchmark skipped: tcpreplay not installed "
            "(apt-get install -y tcpreplay)")
        return {"skipped": "tcpreplay not installed", "rows": []}
    pcap, origin = mixed_capture(1_000_000, log)
    tag = str(os.getpid() % 100000)
    ns = {"S": f"ndbS{tag}", "K": f"ndbK{tag}", "sif": f"nds{tag}", "kif": f"ndk{tag}"}
    rows = []
    try:
        _ip("netns", "add", ns["S"])
        _ip("netns", "add", ns["K"])
        _ip("link", "add", ns["sif"], "netns", ns["S"], "type", "veth", "peer", "name",
            ns["kif"], "netns", ns["K"])
        for side, iface in (("S", "sif"), ("K", "kif")):
            # no IPv6 autoconfiguration: only tcpreplay's packets cross the veth
            subprocess.run(["ip", "netns", "exec", ns[side], "sysctl", "-qw",
                            "net.ipv6.conf.all.disable_ipv6=1"], capture_output=True,
                           timeout=10)
            _ip("-n", ns[side], "link", "set", ns[iface], "up")
        log(f"live veth benchmark: {packets:,} packets of {pcap.name} per run, rates "
            f"{', '.join(f'{r:,}' for r in rates)}/s, workers {workers}; load average "
            f"{os.getloadavg()[0]:.2f}")
        for n in workers:
            for rate in rates:
                rows.append(one_run(ns, pcap, rate, packets, n, log))
    finally:
        for name in (ns["S"], ns["K"]):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
    return {"rows": rows, "packets_per_run": packets, "capture": str(pcap),
            "capture_origin": origin}
