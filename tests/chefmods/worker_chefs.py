"""Chefs for tests/kitchen/test_workers.py: which worker process saw which packet, and one that
kills its worker (a chef bug that takes the process down)."""

import os
from typing import Any

from netdumplings.kitchen.chef import DumplingChef


class WorkerPidChef(DumplingChef):
    """One dumpling per UDP/TCP packet: its endpoints and the pid of the process that saw it."""

    shard = "flows"

    def packet_handler(self, packet: Any) -> Any:
        if packet.sport is None:
            return None
        return {"pid": os.getpid(), "src": f"{packet.ip_src}:{packet.sport}",
                "dst": f"{packet.ip_dst}:{packet.dport}"}


class WorkerKillerChef(DumplingChef):
    """Ends its worker process (as a segfault in a C extension would) at a UDP packet to
    port 9 whose payload is b"die"."""

    shard = "flows"

    def packet_handler(self, packet: Any) -> Any:
        if packet.dport == 9 and packet.l4_payload == b"die":
            os._exit(3)
        return None
