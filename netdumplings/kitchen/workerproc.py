"""The worker side of ``nd-sniff --workers N`` (see ``netdumplings.kitchen.workers``): one process,
one ``Kitchen``, fed batches of packets by the reader (files, stdin) or reading its own
share of a ``PACKET_FANOUT`` group (live), sending its dumplings, its totals at every poke
and its counts at the end back to the reader."""

from __future__ import annotations

import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from .chef import DumplingChef
from .handoff import Inlet
from .kitchen import Kitchen
from ..capture.packet import NsPacket, Packet
from .shard import MERGE, shard_mode

#: Packets per batch sent to a worker (and dumplings per batch sent back, at most).
BATCH = 256


def worker_main(index: int, args: dict[str, Any], inbox_fd: int, outbox: Connection,
                source: Any, inherited: list[int]) -> None:
    # Ctrl-C reaches the whole process group: the reader decides when workers finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for fd in inherited:   # the reader's ends of the pipes to workers
        try:
            os.close(fd)
        except OSError:
            pass
    inbox = Inlet(inbox_fd)
    out: list[bytes] = []
    kitchen = Kitchen(args["name"], args["classes"], sink=lambda d, b: out.append(b),
                      chef_options=args["chef_options"], **args["common"])
    if kitchen.flow_chefs:
        kitchen.flows._next_id = index + 1
        kitchen.flows.id_step = args["workers"]
    merge = [c for c in kitchen.chefs if shard_mode(type(c)) == MERGE]
    # Only "flows" chefs' interval handlers run in a worker; "merge" chefs report totals.
    kitchen.interval_chefs = [c for c in kitchen.interval_chefs if c not in merge]
    worker = Worker(kitchen, merge, inbox, outbox, out)
    worker.report_mask = args.get("report_mask", 0xFFF)
    if source is not None:
        worker.live(source)
    else:
        worker.files()


class Worker:
    def __init__(self, kitchen: Kitchen, merge: list[DumplingChef], inbox: Inlet,
                 outbox: Connection, out: list[bytes]) -> None:
        self.kitchen = kitchen
        self.merge = merge
        self.inbox = inbox
        self.outbox = outbox
        self.out = out
        self.done = False
        self.source: Any = None
        #: Live: the packet count goes to the reader every (mask + 1) packets and when idle.
        self.report_mask = 0xFFF

    def flush(self) -> None:
        out = self.out
        if out:
            self.outbox.send(("D", out[:]))
            out.clear()

    def control(self, msg: tuple) -> None:
        kind = msg[0]
        k = self.kitchen
        if kind == "P":
            _, poke, now = msg
            if now is not None:
                k.now = now
            k.poke()
            self.flush()
            self.outbox.send(("S", poke, self._states()))
        elif kind == "F":
            _, poke, now = msg
            if now is not None and (k.now is None or now > k.now):
                k.now = now
            k.finish()
            self.flush()
            self.outbox.send(("S", poke, self._states()))
            d = k.stats.defrag
            live = self.source.stats() if self.source is not None else None
            self.outbox.send(("Z", {
                "stats": {key: v for key, v in k.stats.as_dict().items()},
                "defrag": (d.fragments, d.reassembled, d.dropped) if d else (0, 0, 0),
                "chef_errors": k.chef_errors, "chef_seconds": k.chef_seconds,
                "live": live}))
            self.done = True

    def _states(self) -> dict[str, Any]:
        states = {}
        for chef in self.merge:
            try:
                states[chef.name] = chef.worker_state()
            except Exception as exc:
                self.kitchen._chef_error(chef, "worker_state raised", exc)
                raise
        return states

    def files(self) -> None:
        k = self.kitchen
        process = k.process
        expire = k.expire
        n = 0
        recv = self.inbox.recv
        while not self.done:
            try:
                msg = recv()
            except (EOFError, OSError):   # the reader is gone
                return
            if msg[0] == "B":
                for data, t, wirelen, linktype, iface, tns in msg[1]:
                    if tns is None:
                        process(Packet(data, t, wirelen, linktype, iface))
                    else:
                        process(NsPacket(data, tns, wirelen, linktype, iface))
                    n += 1
                    if not n & 0x3FF:
                        expire()
                if len(self.out) >= BATCH or not self.inbox.poll():
                    self.flush()   # full, or nothing more to read for now
            else:
                self.control(msg)
        self.outbox.close()

    def live(self, source: Any) -> None:
        self.source = source
        k = self.kitchen
        process = k.process
        poll = self.inbox.poll
        n = 0
        last_flush = time.monotonic()
        try:
            for packet in source:
                if packet is not None:
                    process(packet)
                    n += 1
                    if not n & 0x3FF:
                        k.expire()
                    if n & 0x3F:
                        continue
                while poll():
                    try:
                        msg = self.inbox.recv()
                    except (EOFError, OSError):
                        return
                    self.control(msg)
                    if self.done:
                        return
                now = time.monotonic()
                if self.out and (packet is None or now - last_flush > 0.05
                                 or len(self.out) >= BATCH):
                    self.outbox.send(("D", self.out[:], ))
                    self.out.clear()
                    last_flush = now
                if packet is None or not n & self.report_mask:
                    self.outbox.send(("C", n))
        finally:
            source.close()
