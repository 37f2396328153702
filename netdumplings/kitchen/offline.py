"""Dumplings from a capture file in plain Python: no hub, no asyncio, no threads.

caproto-shark offers a generator over a capture; this is ours, running the real kitchen
pipeline (flow table, reassembly, chefs), so a chef gives the same dumplings here as in
``nd-sniff``::

    from netdumplings.kitchen.offline import read_dumplings
    for dumpling in read_dumplings("capture.pcap", ["ChannelAccessChef"]):
        print(dumpling["payload"]["summary"])
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, BinaryIO, Iterable, Iterator

from .chef import ChefSetupError, DumplingChef
from ..wire.dumpling import decode
from .kitchen import Kitchen
from .registry import resolve_chefs
from ..capture.errors import CaptureError
from ..capture.files import PcapSource


def read_dumplings(source: str | os.PathLike | BinaryIO, chefs: Iterable[Any],
                   chef_options: dict[str, dict[str, Any]] | None = None,
                   poke_interval: float | None = None, kitchen_name: str = "offline",
                   **kitchen_kwargs: Any) -> Iterator[dict[str, Any]]:
    """Yield the dumplings (as JSON-decoded dicts) that ``chefs`` make from a capture.

    ``chefs``: chef classes, chef instances, or bundled chef names (or just one of them).
    ``chef_options`` maps a chef class's name to its options; naming a chef that is not in
    ``chefs``, or one given as an instance (which already has its options), is an error.
    Interval handlers are poked once at the end of the file, and, when ``poke_interval`` is
    given, every ``poke_interval`` seconds of *capture* time in between (a file is read far
    faster than it was captured, so capture time is what chefs' timeouts mean).
    ``bpf_filter="udp port 53"`` cooks only the records a tcpdump filter passes. A damaged
    file yields everything before the damage, then raises ``sources.CaptureError``. A chef
    that cannot be made raises ``chef.ChefSetupError`` before anything is read.
    """
    resolved = _check_chefs(chefs, chef_options)
    out: deque[dict[str, Any]] = deque()
    kitchen = Kitchen(kitchen_name, resolved, sink=lambda d, b: out.append(decode(b)),
                      poke_interval=poke_interval, chef_options=chef_options, **kitchen_kwargs)
    # ``bpf_filter`` selects the records as ``nd-sniff -r FILE -f`` does (see PcapSource)
    pcap = PcapSource(source, bpf_filter=kitchen_kwargs.get("bpf_filter"))
    try:
        process = kitchen.process
        tick = kitchen.tick if poke_interval else None
        try:
            for packet in pcap:
                if tick is not None:
                    tick(packet.time)
                process(packet)
                while out:
                    yield out.popleft()
        except CaptureError:
            kitchen.finish()  # what came before the damage is complete: flush it, then say so
            while out:
                yield out.popleft()
            raise
        kitchen.finish()
        while out:
            yield out.popleft()
    finally:
        pcap.close()


def _check_chefs(chefs: Any, chef_options: dict[str, dict[str, Any]] | None) -> list[Any]:
    if isinstance(chefs, (str, DumplingChef)) or (
            isinstance(chefs, type) and issubclass(chefs, DumplingChef)):
        chefs = [chefs]
    resolved = resolve_chefs(chefs)
    names: dict[str, Any] = {}
    for chef in resolved:
        if isinstance(chef, type) and issubclass(chef, DumplingChef):
            name = chef.__name__
        elif isinstance(chef, DumplingChef):
            name = chef.name
        else:
            raise TypeError(f"not a chef: {chef!r} (give DumplingChef subclasses, instances "
                            f"or bundled chef names)")
        if name in names and names[name] is not chef:
            raise ChefSetupError(f"{name}: two chefs of that name; chefs are known by class "
                                 f"name (in dumplings and per-flow state): rename one")
        names[name] = chef
    for name in chef_options or {}:
        if name not in names:
            raise ChefSetupError(f"{name}: chef_options for a chef that is not running "
                                 f"(running: {', '.join(names) or 'none'})")
        if isinstance(names[name], DumplingChef):
            raise ChefSetupError(f"{name}: chef_options for a chef given as an instance; "
                                 f"give the class, or the options to its constructor")
    return resolved
