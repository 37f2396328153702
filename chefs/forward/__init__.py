"""PacketForwardChef: ship the captured frames themselves, so decoding can happen elsewhere.

A thin capture agent on a busy host runs only this chef; ``nd-cook`` runs the real chefs
where the CPU is, and ``nd-dump`` writes the frames to pcap/pcapng for Wireshark. Frames
are batched because one dumpling per packet would cost more in framing and hub work than
the packet itself.

Payload (``"v": 1``)::

    {"v": 1, "kitchen": str, "kitchen_host": str, "batch": n, "first": k, "snaplen": s,
     "encoding": "base64" | "bytes", "outbox_dropped_total": int | null,
     "packets": [{"ts": float, "ts_ns": int?, "caplen": int, "wirelen": int,
                  "linktype": int, "interface": str | null, "data": <frame>}]}

``batch`` counts dumplings of this chef (1, 2, ...) and ``first`` counts packets forwarded
before this batch, so a receiver can tell exactly how many batches and frames it missed.
``data`` is base64 text by default, because a JSON hub link would otherwise turn bytes into
UTF-8 text or a ``{"$base64": ...}`` object depending on their content; with
``data_encoding=bytes`` the raw bytes are left in the payload for a msgpack link, where they
travel as binary. Receivers (``decode_frame``) accept every form either choice can arrive
in, so a link that falls back to JSON loses nothing.

``ts`` is the float capture time the kitchen has (exact to the microsecond for current
dates); ``ts_ns`` is only added when the packet carries an integer nanosecond time
(``time_ns``: live capture, nanosecond pcap, pcapng with nanosecond ``if_tsresol``), since a
float cannot hold nanoseconds at today's epoch; ``nd-dump --nano`` writes it exactly.

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
