"""Backpressure with stalled eaters, and kitchens surviving a SIGKILLed hub (live capture)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from conftest import free_port, needs_capture, nd_command, wait_port
from hub_helpers import dumpling, open_eater, open_kitchen

CHEFS_FILE = str(Path(__file__).parent.parent / "chefmods" / "udp_echo_chefs.py")


def start_hub(procs, in_port: int, out_port: int, *extra: str):
    if "--metrics-port" not in extra:
        extra += ("--metrics-port", "0")
    hub = procs(nd_command("nd-hub") + ["--in-port", str(in_port), "--out-port", str(out_port),
                                        *extra])
    wait_port(in_port)
    wait_port(out_port)
    return hub


class Collector(threading.Thread):
    """A fast eater: reads batches as they come, keeps sequences and hub notices."""

    def __init__(self, ws, want: int) -> None:
        super().__init__(daemon=True)
        self.ws, self.want = ws, want
        self.seqs: list[int] = []
        self.statuses: list[dict] = []

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while len(self.seqs) < self.want and time.monotonic() < deadline:
            try:
                obj = orjson.loads(self.ws.recv(timeout=10))
            except (TimeoutError, ConnectionClosed):
                return
            for d in obj if isinstance(obj, list) else [obj]:
                if d["metadata"]["chef"] == "SystemStatusChef":
                    self.statuses.append(d["payload"])
                elif d["metadata"]["chef"] == "TestChef":
                    self.seqs.append(d["metadata"]["sequence"])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_stalled_eaters_while_200k_dumplings_flow(procs):
    n, queue = 200_000, 2000
    in_port, out_port = free_port(), free_port()
    hub = start_hub(procs, in_port, out_port, "--max-queue", str(5 * queue),
                    "--status-freq", "0.3")
    ps = psutil.Process(hub.p.pid)
    fast, _ = open_eater(f"ws://127.0.0.1:{out_port}", "fast", batch=True)
    # Stalled eaters: their client buffers 2 messages, then stops reading the socket.
    stalled, _ = open_eater(f"ws://127.0.0.1:{out_port}", "stalled", batch=True, max_queue=2,
                            chefs=["TestChef"], queue_size=queue)
    quitter, _ = open_eater(f"ws://127.0.0.1:{out_port}", "quitter", batch=True, max_queue=2,
                            chefs=["TestChef"], policy="disconnect", queue_size=100)
    collector = Collector(fast, n)
    collector.start()
    baseline = ps.memory_info().rss
    peak = [baseline]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], ps.memory_info().rss)
            time.sleep(0.05)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    kitchen, _ = open_kitchen(f"ws://127.0.0.1:{in_port}", batch=True)
    pad = "x" * 1000   # 200k x ~1.1 KB: an unbounded queue would need > 220 MB
    started = time.monotonic()
    for first in range(1, n + 1, 500):
        # The fast eater shares this process (and its GIL) with the kitchen: keep the kitchen
        # from outrunning it, so that "fast" means the eater, not the scheduler's mood.
        for _ in range(500):
            if first - len(collector.seqs) < 4 * queue:
                break
            time.sleep(0.002)
        kitchen.send(orjson.dumps([dumpling(i, payload={"pad": pad})
                                   for i in range(first, min(first + 500, n + 1))]))
    collector.join(60)
    elapsed = time.monotonic() - started
    sampling.set()
    sampler.join(2)
    kitchen.close()

    # The fast eater got everything, in order, at full speed.
    assert collector.seqs == list(range(1, n + 1))
    assert elapsed < 40, elapsed
    # Memory stayed bounded: queues of 2000 (stalled), 100 (quitter) and <= 10000 (fast),
    # plus socket buffers - not 200k dumplings.
    growth = (peak[0] - baseline) / 2**20
    assert growth < 100, f"hub RSS grew {growth:.0f} MB"  # unbounded: > 220 MB
    # Status dumplings showed the stalled eater's drops and full queue.
    seen = [e for st in collector.statuses for e in st["dumpling_eaters"]
            if e["info_from_eater"]["eater_name"] == "stalled"]
    assert max(e["dropped"] for e in seen) > 0
    assert max(e["queue_depth"] for e in seen) >= queue // 2
    assert all(e["queue_depth"] <= queue for e in seen)

    # The drop-oldest eater, once it reads again: what it got plus what it was told it
    # missed is everything, and the notices come before the gaps they explain.
    got, missed, last = 0, 0, 0
    deadline = time.monotonic() + 20
    while got + missed < n and time.monotonic() < deadline:
        try:
            obj = orjson.loads(stalled.recv(timeout=5))
        except TimeoutError:
            break
        for d in obj if isinstance(obj, list) else [obj]:
            if d["metadata"]["chef"] == "HubNoticeChef":
                assert d["payload"]["notice"] == "missed"
                missed += d["payload"]["missed"]
            else:
                seq = d["metadata"]["sequence"]
                assert seq > last
                assert seq - last - 1 <= missed  # every gap was announced
                last = seq
                got += 1
    assert got + missed == n and missed > 0 and got >= queue
    # The disconnect-policy eater was closed with 4102.
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(1000):
            quitter.recv(timeout=5)
    assert info.value.rcvd.code == 4102
    stalled.close()
    fast.close()
    print(f"\n200k x 1.1 KB: {n / elapsed:.0f} dumplings/s to the fast eater, hub RSS "
          f"{baseline / 2**20:.0f} -> peak {peak[0] / 2**20:.0f} MB")


def _udp_sender(port: int, stop: threading.Event, sent: list[str], rate: float = 40) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    i = 0
    while not stop.is_set() and i < 2000:
        i += 1
        text = f"pkt-{i}"
        s.sendto(text.encode(), ("127.0.0.1", port))
        sent.append(text)
        time.sleep(1 / rate)
    s.close()


@needs_capture
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_hub_sigkill_during_live_capture(procs):
    """SIGKILL the hub for 5 s mid-capture. Kitchen "big" (default outbox) loses nothing:
    the eater sees every packet once, in order, sequence numbers without a gap. Kitchen
    "tiny" (a 2 KB outbox) loses some, and says how many: in its notice, in nd-sniff's
    summary, and as exactly that many missing sequence numbers."""
    in_port, out_port = free_port(), free_port()
    big_port = free_port(socket.SOCK_DGRAM)
    tiny_port = free_port(socket.SOCK_DGRAM)
    metrics = free_port()
    hub_args = ("--status-freq", "0", "--startup-grace", "15", "--metrics-port", str(metrics))
    hub = start_hub(procs, in_port, out_port, *hub_args)
    eater = procs(nd_command("nd-print") + ["--hub", f"127.0.0.1:{out_port}", "--json",
                                            "--chef", "UdpPayloadChef",
                                            "--chef", "KitchenNoticeChef"])
    eater.wait_line("connected")
    kitchens = {}
    for name, port, extra in (("big", big_port, []), ("tiny", tiny_port,
                                                      ["--outbox-mb", "0.002"])):
        kitchens[name] = procs(nd_command("nd-sniff") + [
            "-i", "lo", "-f", f"udp dst port {port}", "-m", CHEFS_FILE, "-c", "UdpPayloadChef",
            "-n", name, "--hub", f"127.0.0.1:{in_port}", "-p", "0", "-v", *extra])
    for k in kitchens.values():
        k.wait_line("sniffing", timeout=15)
    time.sleep(1.0)  # kitchens connected and capturing
    stop = threading.Event()
    sent: dict[str, list[str]] = {"big": [], "tiny": []}
    senders = [threading.Thread(target=_udp_sender, args=(p, stop, sent[n]), daemon=True)
               for n, p in (("big", big_port), ("tiny", tiny_port))]
    for t in senders:
        t.start()
    time.sleep(2.0)
    os.kill(hub.p.pid, signal.SIGKILL)
    hub.p.wait(5)
    time.sleep(5.0)
    hub = start_hub(procs, in_port, out_port, *hub_args)
    # Everyone comes back on their own backoff (up to ~10 s); traffic goes on meanwhile.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/healthz", timeout=5) as r:
            health = orjson.loads(r.read())
        if health["kitchens"] == 2 and health["eaters"] == 1:
            break
        time.sleep(0.1)
    assert health["kitchens"] == 2 and health["eaters"] == 1, health
    time.sleep(1.0)
    stop.set()
    for t in senders:
        t.join(5)

    def lines() -> list[dict]:
        return [orjson.loads(line) for line in list(eater.out) if line.startswith("{")]

    def packets(kitchen: str) -> list[dict]:
        return [d for d in lines() if d["metadata"]["kitchen"] == kitchen and
                d["metadata"]["chef"] == "UdpPayloadChef"]

    def last_text(kitchen: str) -> str | None:
        got = packets(kitchen)
        return got[-1]["payload"]["text"] if got else None

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (last_text("big"), last_text("tiny")) != (
            sent["big"][-1], sent["tiny"][-1]):
        time.sleep(0.1)
    time.sleep(1.0)  # anything extra (a duplicate) would show now
    for k in kitchens.values():
        k.p.send_signal(signal.SIGTERM)
    for k in kitchens.values():
        assert k.wait(20) == 0, k.err[-10:]

    big = packets("big")
    assert [d["payload"]["text"] for d in big] == sent["big"]
    seqs = [d["metadata"]["sequence"] for d in big]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert len(sent["big"]) > 250  # the outage really happened mid-stream

    tiny = packets("tiny")
    notices = [d["payload"] for d in lines() if d["metadata"]["chef"] == "KitchenNoticeChef"
               and d["metadata"]["kitchen"] == "tiny"]
    reported = sum(n["dropped"] for n in notices)
    seqs = [d["metadata"]["sequence"] for d in tiny]
    gaps = sum(b - a - 1 for a, b in zip(seqs, seqs[1:]))
    assert reported > 0
    assert gaps == reported
    assert len(tiny) + reported == len(sent["tiny"])
    summary = kitchens["tiny"].wait_line("nd-sniff: ")
    assert f"{reported} dropped (outbox full)" in summary
    assert "outbox full" not in kitchens["big"].wait_line("nd-sniff: ")
    print(f"\nhub killed for 5 s: big kitchen {len(big)}/{len(sent['big'])} delivered, tiny "
          f"kitchen {len(tiny)} delivered + {reported} reported lost of {len(sent['tiny'])}")
