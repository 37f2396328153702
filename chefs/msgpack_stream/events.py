"""The events ``MsgpackStreamDecoder`` returns: a whole top-level object, or bytes it could
not use. Plain dataclasses, stdlib only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class MsgpackObject:
    """One whole top-level object: where it sat in the stream and when its bytes arrived."""

    value: Any
    offset: int
    size: int
    first_timestamp: float | None
    last_timestamp: float | None


@dataclass
class MsgpackError:
    """Bytes the decoder could not use (bad data, an oversized object, a gap, a cut end)."""

    reason: str
    offset: int
    #: bytes given up on at this point (more may be skipped silently while resyncing)
    skipped: int = 0
    #: the decoder stopped decoding this stream for good
    fatal: bool = False


MsgpackEvent = MsgpackObject | MsgpackError
