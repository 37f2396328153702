"""What nd-sniff does to the packet stream around the kitchen: ``-w`` writes every packet
the kitchen reads to a pcap/pcapng file as it goes, ``-c N`` stops after N packets, and a
progress line shows how far a file has been read."""

from __future__ import annotations

import sys
import time
from typing import Any

from ..capture.files import PcapSource
from ..capture.live import LiveSource
from ..capture.pcapwriter import Dumper
from ..kitchen.kitchen import Kitchen

PROG = "nd-sniff"


def packets_for(source: Any, tee: "Tee | None", count: int | None) -> Any:
    """What the kitchen reads: the source, through ``-w``'s tee, cut at ``--count``."""
    packets = tee(source) if tee is not None else source
    return packets if count is None else _first(packets, count)


def _first(packets: Any, count: int) -> Any:
    """The first ``count`` packets (a live source's idle ticks, ``None``, pass uncounted)."""
    n = 0
    for packet in packets:
        yield packet
        if packet is not None:
            n += 1
            if n >= count:
                return


class Tee:
    """``-w FILE``: every packet the kitchen reads also goes to a pcap/pcapng file.

    Buffered, flushed when a live source is idle and every 256 live packets, so a reader of
    the file (``tail -c +1 -f``, ``-w - | tcpdump -r -``) is never far behind. A write
    error stops the writing, not the kitchen: it is reported at once and at exit (status 1).
    """

    def __init__(self, dumper: Dumper, name: str) -> None:
        self.dumper = dumper
        self.name = name
        self.error: str | None = None

    @property
    def written(self) -> int:
        return self.dumper.written

    @property
    def skipped(self) -> int:
        return self.dumper.skipped_linktype

    def __call__(self, source: Any) -> Any:
        write = self.dumper.write_frame
        n = 0
        for packet in source:
            if self.error is None:
                try:
                    if packet is None:
                        self.dumper.flush()   # a live source with nothing to read
                    else:
                        write({"ts": packet.time, "ts_ns": getattr(packet, "time_ns", None),
                               "data": packet.data, "wirelen": packet.wirelen,
                               "linktype": packet.linktype, "interface": packet.interface})
                        n += 1
                        if not n & 0xFF and isinstance(source, LiveSource):
                            self.dumper.flush()
                except OSError as exc:
                    self._failed(exc)
            yield packet

    def _failed(self, exc: OSError) -> None:
        self.error = (f"-w {self.name}: writing stopped after {self.dumper.written} packets: "
                      f"{exc.strerror or exc}")
        print(f"{PROG}: error: {self.error} (the chefs go on)", file=sys.stderr)

    def close(self) -> None:
        try:
            self.dumper.close()
        except OSError as exc:
            if self.error is None:
                self._failed(exc)


def progress_line(source: PcapSource, kitchen: Kitchen, started: float) -> Any:
    size = source.size or 1
    last = [0.0]

    def show() -> None:
        now = time.monotonic()
        if now - last[0] < 0.2:
            return
        last[0] = now
        el = max(now - started, 1e-6)
        sys.stderr.write(f"\r{PROG}: {100 * source.offset / size:5.1f}%  "
                         f"{kitchen.stats.packets} packets  {kitchen.stats.dumplings} dumplings  "
                         f"{kitchen.stats.packets / el:.0f} packets/s\x1b[K")
        sys.stderr.flush()
    return show
