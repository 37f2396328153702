"""DNS lookups: which names were asked for, what came back, and how long it took.

``DnsDecoder`` is the sans-I/O part: fed one DNS message (a UDP payload, or a message cut
from a TCP stream by ``DnsTcpFramer``) at a time, it parses it and pairs each response
with the query it answers (same message id within one flow), so the chef only has to turn
the resulting ``Lookup`` events into dumplings. ``DNSLookupChef`` is the thin shell: one
decoder per flow, plus the netdumplings 0.5 interval summary
``{"lookups_seen": {hostname: {"count", "latest"}}}``.

Modules, and what each may import:

* ``events``: the messages and events the decoder returns (stdlib only).
* ``presentation``: how names, codes and TXT strings are written (stdlib, dnslib).
* ``reference``: dnslib parses the message; the output is defined by it.
* ``fast``: the same text straight from the bytes for the common record types, or None.
* ``decoder``: ``parse_message``, ``DnsDecoder``, ``DnsTcpFramer``.
  These five import only the stdlib, dnslib and each other: nothing of the framework
  (no kitchen, flows, packets or dumplings), so the decoder is usable on its own.
* ``payload``: events to the dumplings' JSON payloads (may use the framework's
  ``Direction`` and the flow it is given).
* ``chef``: ``DNSLookupChef``, the only module that knows the kitchen's chef API.
"""

from .chef import DNSLookupChef
from .decoder import ERROR_HEX_BYTES, DnsDecoder, DnsTcpFramer, parse_message
from .events import DecodeError, DnsMessage, Event, Lookup, Query
from .fast import MAX_POINTER_HOPS, fast_parse
from .presentation import (EXTENDED_RCODES, MAX_DATA_CHARS, MAX_MESSAGE, MAX_RECORDS,
                           txt_presentation)
from .reference import NAME_WORK_PER_BYTE, parse_message_dnslib

__all__ = [
    "DNSLookupChef", "DecodeError", "DnsDecoder", "DnsMessage", "DnsTcpFramer", "Event",
    "Lookup", "Query", "fast_parse", "parse_message", "parse_message_dnslib",
    "txt_presentation", "ERROR_HEX_BYTES", "EXTENDED_RCODES", "MAX_DATA_CHARS", "MAX_MESSAGE",
    "MAX_POINTER_HOPS", "MAX_RECORDS", "NAME_WORK_PER_BYTE",
]
