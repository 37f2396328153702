"""The hub for plain clients: one dumpling per WebSocket message, ours next to 0.5.1's.

Kitchens and eaters that speak netdumplings 0.5's protocol (most hand-written clients in
other languages do: a JSON hello, then one JSON dumpling per message, no batches) cost a hub
one received and one sent message per dumpling and eater, which batched clients do not. This
measures that path on our ``nd-hub`` and on netdumplings 0.5.1's, side by side: both hubs
run for the whole benchmark, and every phase runs on each hub in turn, rounds alternating
which goes first, so machine noise falls on both. Per phase and hub the best round is kept
(the others are in the JSON results).

* Kitchen (this process): a 0.5 hello, then ``count`` dumplings, one per message, all framed
  (and masked) beforehand with websockets' sans-I/O client and written with ``sendall``: the
  kitchen costs the hub nothing but the bytes, so the figures are the hub's (a real Python
  kitchen making 100,000 messages/s would need a core of its own).
* Eaters (``bench.hub_plain_eater``, one process per ``--eater-procs`` share): 0.5 hellos,
  aiohttp clients, every dumpling parsed and checked for order.
* Rate per eater: its dumplings over the time from the kitchen's first byte to its last
  dumpling. Also reported: the hub's CPU time per dumpling relayed (from /proc, over the
  phase), which does not depend on how fast the clients are.

netdumplings 0.5.1 comes from its own venv (``.venv-nd05``, made by tests/compat/test_compat05.py's
fixture, or ``--nd05 DIR``); without it only our hub is measured.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import orjson
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from .hub import RssSampler, _free_port, _wait_port

BENCH = Path(__file__).resolve().parent
ND05 = BENCH.parent / ".venv-nd05" / "bin"


def dumplings(count: int) -> list[bytes]:
    """``count`` BenchChef dumplings as a kitchen would send them (sequence 1..count)."""
    ct = time.time()
    out = []
    for n in range(1, count + 1):
        out.append(orjson.dumps({
            "metadata": {"chef": "BenchChef", "kitchen": "plain", "creation_time": ct,
                         "driver": "packet", "sequence": n, "host": "bench"},
            "payload": {"n": n, "summary": "A steam42.example -> 203.0.113.7 (NOERROR)",
                        "client": "192.0.2.10:40000", "server": "198.51.100.53:53"}}))
    return out


class PlainKitchen:
    """A 0.5-style kitchen over a blocking socket, websockets' sans-I/O client doing the
    handshake and the framing."""

    def __init__(self, uri: str) -> None:
        wsuri = parse_uri(uri)
        self.proto = ClientProtocol(wsuri)
        self.sock = socket.create_connection((wsuri.host, wsuri.port), timeout=30)
        self.proto.send_request(self.proto.connect())
        self._flush()
        while self.proto.state is State.CONNECTING:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("hub closed during the handshake")
            self.proto.receive_data(data)
        if self.proto.handshake_exc is not None:
            raise self.proto.handshake_exc
        self.proto.events_received()

    def _flush(self) -> None:
        data = b"".join(self.proto.data_to_send())
        if data:
            self.sock.sendall(data)

    def hello(self, name: str) -> None:
        self.proto.send_text(orjson.dumps({"kitchen_name": name}))
        self._flush()

    def frames(self, messages: list[bytes]) -> bytes:
        """The messages framed and masked, ready to write (not written)."""
        for m in messages:
            self.proto.send_text(m)
        return b"".join(self.proto.data_to_send())

    def close(self) -> None:
        try:
            self.proto.send_close(1000)
            self._flush()
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(5)
            while self.sock.recv(65536):
                pass
        except OSError:
            pass
        self.sock.close()


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(hub: dict[str, Any], eaters: int, msgs: list[bytes], procs: int,
          log: Callable[[str], None]) -> dict[str, Any]:
    count = len(msgs)
    procs = max(1, min(procs, eaters))
    shares = [eaters // procs + (1 if i < eaters % procs else 0) for i in range(procs)]
    uri = f"ws://127.0.0.1:{hub['out_port']}/"
    children = [subprocess.Popen([sys.executable, "-m", "bench.hub_plain_eater", uri,
                                  str(n), str(count)], cwd=BENCH.parent,
                                 stdout=subprocess.PIPE, text=True) for n in shares]
    try:
        for child in children:
            line = child.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"eaters did not start: {line!r}")
        kitchen = PlainKitchen(f"ws://127.0.0.1:{hub['in_port']}/")
        kitchen.hello("plain")
        blob = kitchen.frames(msgs)
        hub["rss"].reset_peak()
        cpu0 = _cpu(hub["pid"])
        t0 = time.time()
        kitchen.sock.sendall(blob)
        t_sent = time.time()
        results = []
        for child in children:
            out, _ = child.communicate(timeout=180 + count / 1000)
            results.extend(orjson.loads(out.strip().splitlines()[-1]))
        cpu = _cpu(hub["pid"]) - cpu0
        kitchen.close()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    received = [r["received"] for r in results]
    rates = [r["received"] / (r["last"] - t0) if r["last"] else 0 for r in results]
    total = sum(received)
    elapsed = max(r["last"] or t0 for r in results) - t0
    eater_cpu = sum(r["process_cpu_s"] / r["clients_in_process"] for r in results)
    row = {"hub": hub["name"], "eaters": eaters, "sent": count,
           "received_min": min(received), "lost_max": count - min(received),
           "out_of_order": sum(r["out_of_order"] for r in results),
           "per_eater_dumplings_per_s_min": round(min(rates)),
           "kitchen_send_seconds": round(t_sent - t0, 3),
           "hub_cpu_us_per_dumpling_out": round(cpu / total * 1e6, 2) if total else None,
           "hub_cpu_busy": round(cpu / elapsed, 2) if elapsed > 0 else None,
           "eaters_cpu_busy": round(eater_cpu / elapsed, 2) if elapsed > 0 else None,
           "hub_rss_mb_peak": round(hub["rss"].peak / 2**20, 1)}
    log(f"  {hub['name']}: {eaters} eater(s): sent {count:,}, min received "
        f"{row['received_min']:,}, {row['per_eater_dumplings_per_s_min']:,}/s per eater, "
        f"hub CPU {row['hub_cpu_us_per_dumpling_out']} us per dumpling out (busy "
        f"{row['hub_cpu_busy']}, eater processes {row['eaters_cpu_busy']} of a core), "
        f"RSS peak {row['hub_rss_mb_peak']} MB")
    return row


def _start(name: str, cmd: list[str]) -> dict[str, Any]:
    in_port, out_port = _free_port(), _free_port()
    proc = subprocess.Popen(cmd + ["--in-port", str(in_port), "--out-port", str(out_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(in_port)
    _wait_port(out_port)
    return {"name": name, "proc": proc, "pid": proc.pid, "in_port": in_port,
            "out_port": out_port, "rss": RssSampler(proc.pid)}


def run(count: int = 300_000, rounds: int = 3, eater_procs: int = 2, nd05: Path | None = None,
        log: Callable[[str], None] = print, only: str | None = None) -> dict[str, Any]:
    """Phases: 1 eater with ``count`` dumplings, 10 eaters with ``count // 3``; each on our
    hub and 0.5.1's, ``rounds`` times, alternating."""
    exe = Path(sys.executable).parent / "nd-hub"
    ours = ([str(exe)] if exe.exists() else [sys.executable, "-m", "netdumplings.cli.hub"]) \
        + ["--status-freq", "3600", "--metrics-port", "0"]
    nd05 = nd05 or ND05
    hubs = []
    if only != "0.5.1":
        hubs.append(_start("ours", ours))
    if only != "ours":
        if (nd05 / "nd-hub").exists():
            hubs.append(_start("0.5.1", [str(nd05 / "nd-hub"), "--address", "127.0.0.1",
                                         "--status-freq", "3600"]))
        else:
            log(f"no netdumplings 0.5.1 in {nd05} (run tests/compat/test_compat05.py once to make "
                "it): our hub alone")
    msgs = {1: dumplings(count), 10: dumplings(max(1, count // 3))}
    rows: list[dict[str, Any]] = []
    try:
        log("plain-client hub benchmark: " + ", ".join(f"{h['name']} pid {h['pid']}"
                                                      for h in hubs))
        for h in hubs:   # warm-up, not reported
            phase(h, 1, msgs[10], 1, lambda _: None)
        for r in range(rounds):
            order = hubs if r % 2 == 0 else hubs[::-1]
            for eaters in (1, 10):
                for h in order:
                    row = phase(h, eaters, msgs[eaters], 1 if eaters == 1 else eater_procs,
                                log)
                    row["round"] = r
                    rows.append(row)
    finally:
        for h in hubs:
            h["rss"].stop()
            h["proc"].terminate()
            try:
                h["proc"].wait(10)
            except subprocess.TimeoutExpired:
                h["proc"].kill()
    best = []
    for h in hubs:
        for eaters in (1, 10):
            mine = [x for x in rows if x["hub"] == h["name"] and x["eaters"] == eaters]
            if mine:
                b = dict(max(mine, key=lambda x: x["per_eater_dumplings_per_s_min"]))
                b["rounds"] = [x["per_eater_dumplings_per_s_min"] for x in mine]
                best.append(b)
    for b in best:
        if b["hub"] == "ours":
            other = [x for x in best if x["hub"] == "0.5.1" and x["eaters"] == b["eaters"]]
            if other and other[0]["per_eater_dumplings_per_s_min"]:
                b["vs_0.5.1"] = round(b["per_eater_dumplings_per_s_min"]
                                      / other[0]["per_eater_dumplings_per_s_min"], 2)
    return {"rows": rows, "best": best, "count": count, "rounds": rounds,
            "eater_procs": eater_procs}
