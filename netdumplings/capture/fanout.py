"""Live capture for several workers: one ``PACKET_FANOUT`` group per interface.

The reader opens one ``LiveSource`` per worker (each socket with its own kernel buffer,
filter and drop counter), puts the sockets of each interface into one fanout group in
``PACKET_FANOUT_HASH`` mode with ``PACKET_FANOUT_FLAG_DEFRAG`` - the kernel sends both
directions of a flow to the same socket (its flow hash is symmetric) and reassembles IPv4
fragments before hashing, so a datagram's fragments stay together - then forks the
workers, each keeping one source. Only after every socket has joined is anything read:
what arrived before (each socket hears everything until it joins) is discarded, so no
packet is seen twice.

IPv6 fragments are not reassembled by the kernel before hashing: a fragmented IPv6
datagram's later fragments (no ports) may reach another worker than its first, and that
datagram is then counted as not reassembled. Not like the reader's split of a file (``netdumplings.kitchen.shard``): the kernel hashes the
4-tuple, so a UDP reply on another 4-tuple (an EPICS CA search answered unicast after a
broadcast) may land in another worker than its request; its dumpling then has no PV name.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Any, Iterator

from .errors import CaptureError
from .live import LiveSource, drain

SOL_PACKET = 263
PACKET_FANOUT = 18
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_DEFRAG = 0x8000


def join_fanout(sock: socket.socket, group: int) -> None:
    value = (group & 0xFFFF) | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16)
    # as an unsigned int: the DEFRAG flag sets the top bit, beyond a C int
    sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", value))


class FanoutCapture:
    """The live side of ``ShardedKitchen``: opens the workers' sources, and is what
    ``nd-sniff`` holds as its source (``close``, ``stats``, iterating = idle ticks)."""

    def __init__(self, interfaces: list[str] | None, bpf_filter: str | None, snaplen: int,
                 count: int | None = None, tick: float = 0.2) -> None:
        self.interfaces = interfaces
        self.bpf_filter = bpf_filter
        self.snaplen = snaplen
        self.count = count
        self.tick = tick
        self.sources: list[LiveSource] = []
        self._stats: dict[str, int] | None = None
        self._closed = False
        self.kitchen: Any = None
        #: The reader's own capture (``-w``, chefs that must see every packet), if any.
        self.own: LiveSource | None = None
        self.fanout = True

    def open(self, n: int) -> list[LiveSource]:
        """N sources, joined to one fanout group per interface and drained."""
        base = (os.getpid() * 7) & 0xFFFF
        try:
            for _ in range(n):
                self.sources.append(LiveSource(self.interfaces, self.bpf_filter,
                                               snaplen=self.snaplen))
            for src in self.sources:
                for k, (sock, _name) in enumerate(src._socks):
                    try:
                        join_fanout(sock, base + k)
                    except OSError as exc:
                        raise CaptureError(f"cannot share the capture between workers "
                                           f"(PACKET_FANOUT): {exc.strerror or exc}") from exc
            for src in self.sources:
                for sock, _name in src._socks:
                    drain(sock)
                for sock, _name in src._socks:
                    src._stats(sock)   # start the kernel counters from here
        except BaseException:
            for src in self.sources:
                src.close()
            self.sources = []
            raise
        return list(self.sources)

    def close_parent_copies(self) -> None:
        """The workers own the sockets now: close this process's copies without reading
        (and so resetting) their kernel counters."""
        for src in self.sources:
            for sock, _name in src._socks:
                sock.close()
            src._closed = True

    def count_reached(self, kitchen: Any) -> bool:
        return self.count is not None and kitchen.live_packets() >= self.count

    def __iter__(self) -> Iterator[None]:
        while not self._closed:
            time.sleep(self.tick)
            yield None

    def close(self) -> None:
        self._closed = True
        if self.own is not None:
            self.own.close()

    def stats(self) -> dict[str, Any]:
        """Summed over the workers' sources (known once they finished), and per worker."""
        per = self.kitchen.live_stats() if self.kitchen is not None else {}
        total: dict[str, Any] = {"packets": 0, "kernel_packets": 0, "kernel_drops": 0,
                 "forwarded_duplicates": 0}
        for st in per.values():
            for key in total:
                total[key] += st.get(key, 0)
        total["per_worker"] = [per.get(i, {}).get("kernel_drops", 0)
                               for i in range(len(self.sources))]
        if self.own is not None:
            total["reader_drops"] = self.own.stats()["kernel_drops"]
        return total
