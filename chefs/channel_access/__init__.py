"""EPICS Channel Access: every CA command on the wire, with the PV it concerns.

``ChannelAccessDecoder`` is the sans-I/O part. It frames the bytes of one TCP virtual
circuit (or one UDP datagram) into CA messages and leaves the decoding of each message to
caproto's own parser, so this package never re-implements the protocol. What caproto
does not do for a passive observer is remember what a circuit has set up: a
``ReadNotifyResponse`` only carries an ioid, a monitor update only a subscription id. The
decoder keeps the circuit's cid/sid/ioid/subscription maps (bounded) so that every event
names its PV, and pairs notify requests with their responses for latency.

``ChannelAccessChef`` is the thin shell: one decoder per flow, UDP search names resolved
across flows (a broadcast search and its unicast reply are two different UDP flows), and
an interval summary of PVs, searches, circuits and monitors.

Modules, and what each may import:

* ``events``: ``CAEvent`` and ``Side`` (stdlib only).
* ``values``: caproto's values as JSON (stdlib, caproto).
* ``messages``: one framed message to its command and fields, by caproto's parser.
* ``names``: the circuit's id maps, so that events name their PV.
* ``decoder``: ``ChannelAccessDecoder``: framing, gaps, resync, errors.
* ``describe``: an event as a one-line summary.
  These six import only the stdlib, caproto and each other: nothing of the framework (no
  kitchen, flows, packets or dumplings), so the decoder is usable on its own.
* ``chef``: ``ChannelAccessChef``, the only module that knows the kitchen's chef API
  (it maps the kitchen's ``Direction`` to the decoder's ``Side`` and back).
"""

from .chef import ANY_ADDRESS, ChannelAccessChef
from .decoder import (ERROR_HEX_BYTES, HEADER_SIZE, MAX_CONSECUTIVE_ERRORS, RESYNC_TRIES,
                      ChannelAccessDecoder, looks_like_version_header)
from .describe import MAX_SUMMARY_CHARS, SUMMARY_ITEMS, describe_event
from .events import CAEvent, Side
from .names import CircuitNames
from .values import jsonable

__all__ = [
    "ChannelAccessChef", "ChannelAccessDecoder", "CAEvent", "CircuitNames", "Side",
    "describe_event", "jsonable", "looks_like_version_header", "ANY_ADDRESS",
    "ERROR_HEX_BYTES", "HEADER_SIZE", "MAX_CONSECUTIVE_ERRORS", "MAX_SUMMARY_CHARS",
    "RESYNC_TRIES", "SUMMARY_ITEMS",
]
