"""What the Channel Access decoder returns: one ``CAEvent`` per message, and the ``Side``
a message was sent from.

No framework types: ``Side`` has the same member names and values as the kitchen's
``Direction`` (so ``str(side)`` reads the same in a payload), and the chef maps one to
the other at its boundary.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Side(str, enum.Enum):
    """Which peer sent the bytes: the client (who opened the circuit) or the server."""

    CLIENT_TO_SERVER = "client_to_server"
    SERVER_TO_CLIENT = "server_to_client"

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True)
class CAEvent:
    """One CA message, decoded (``error`` is None) or not (``error`` says why).

    ``fields`` are the arguments of caproto's command class, already JSON-able;
    ``pv`` is the channel name when the circuit's history tells it; ``latency`` is the
    capture-time delay from the matching request for notify and search responses."""

    direction: Side
    command: str
    command_id: int | None
    fields: dict[str, Any]
    size: int
    pv: str | None = None
    latency: float | None = None
    error: str | None = None
    timestamp: float | None = None
