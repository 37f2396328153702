"""HTTP/1.x: request/response transactions, seen passively from both directions.

The package keeps the decoder apart from the chef, so the decoder can be used and tested on
its own (bytes in, events out), as h11 is:

* ``decoder.py`` - ``Http1Decoder``, the sans-I/O decoder of one TCP connection, put
  together from ``state.py`` (its state and shared bookkeeping), ``requests.py`` (the
  client's half), ``responses.py`` (the server's half) and ``resync.py`` (starting again
  after a gap); ``fast.py`` parses plain messages without h11, ``lenient.py`` repairs
  requests h11 refuses but servers answer; ``events.py`` holds what it returns.
* ``chef.py`` - ``Http1Chef``, the shell that feeds the decoder from the kitchen, and
  ``payload.py``, its events as dumpling payloads.

What may import what: the decoder's modules (all but ``chef.py``, ``payload.py`` and this
file) import only the stdlib, h11 and each other - nothing from the framework
(``netdumplings.*``), no scapy, sockets or asyncio (tests/chefs/test_http1_decoder.py
checks it). ``chef.py`` and ``payload.py`` may import the framework's chef API and flows.

Every name imported from ``netdumplings.chefs.http1`` before it became a package is
re-exported here.
"""

from .chef import REQUEST_LINE, UPGRADE_STATE_KEY, Http1Chef
from .decoder import Http1Decoder
from .events import MAX_VALUE_CHARS, Event, HttpMessage, Problem, Side, Transaction, as_text
from .fast import _Message
from .lenient import Repaired, repair_request_head
from .payload import transaction_payload

__all__ = ["REQUEST_LINE", "UPGRADE_STATE_KEY", "Http1Chef", "Http1Decoder", "MAX_VALUE_CHARS",
           "Event", "HttpMessage", "Problem", "Side", "Transaction", "as_text", "_Message",
           "Repaired", "repair_request_head", "transaction_payload"]
