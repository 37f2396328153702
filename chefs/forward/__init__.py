"""PacketForwardChef: ship the captured frames themselves, so decoding can happen elsewhere.

A thin capture agent on a busy host runs only this chef; ``nd-cook`` runs the real chefs
where the CPU is, and ``nd-dump`` writes the frames to pcap/pcapng for Wireshark. Frames
are batched because one dumpling per packet would cost more in framing and hub work than
the packet itself.

The payload format, and the receivers' side of it, are in ``decoder``.

Modules, and what each may import:

- ``chef``: ``PacketForwardChef``, the sending side (the framework's chef API).
- ``decoder``: the receiving side, ``iter_frames`` / ``decode_frame`` / ``BatchTracker``:
  a payload in, frame records out; stdlib only (no framework module, no scapy, sockets or
  asyncio), so a receiver needs nothing of the kitchen.

Every name below stays importable as ``netdumplings.chefs.forward.<name>``.
"""

from .chef import PacketForwardChef, outbox_dropped_total
from .decoder import PAYLOAD_VERSION, BatchTracker, decode_frame, iter_frames

__all__ = ["PAYLOAD_VERSION", "BatchTracker", "PacketForwardChef", "decode_frame",
           "iter_frames", "outbox_dropped_total"]
