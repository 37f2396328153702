"""The events a ``ZmtpDecoder`` returns, and how their bytes are shown to a person.

Plain dataclasses, no framework imports: a program using the decoder on its own reads
these, and the chef shell (``chef.py`` / ``payload.py``) turns them into dumplings.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

_PRINTABLE = frozenset(string.printable) - set("\x0b\x0c")


# -- rendering bytes --------------------------------------------------------------------


def as_text(data: bytes) -> str | None:
    """The bytes as text when they are printable UTF-8 (what a person would read), else None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(c in _PRINTABLE or (ord(c) > 0x9F and c.isprintable()) for c in text):
        return text
    return None


def show(data: bytes) -> str:
    """One string for a value: its text when printable, else hex."""
    text = as_text(data)
    return text if text is not None else data.hex()


# -- events -------------------------------------------------------------------------------


@dataclass(slots=True)
class Greeting:
    """The 64-byte ZMTP 3.x greeting of one peer."""

    version: tuple[int, int]
    mechanism: str
    as_server: bool
    signature_hex: str
    #: libzmq puts the routing-id length + 1 in the last padding byte; shown, not trusted.
    padding_hex: str


@dataclass(slots=True)
class NotZmtp:
    """The peer does not speak ZMTP 3.x (ZMTP 1.0/2.0, or something else): said once."""

    protocol: str
    first_bytes_hex: str


@dataclass(slots=True)
class Joined:
    """The capture started after the greeting; frames are decoded from a boundary found
    where a captured chunk parsed as whole frames (mechanism and version unknown)."""

    skipped: int


@dataclass(slots=True)
class Resynced:
    """Decoding resumed after a gap, at a chunk that parsed as whole frames. ``missing``:
    bytes the capture lost; ``skipped``: captured bytes dropped before the boundary."""

    missing: int
    skipped: int


@dataclass(slots=True)
class Command:
    """One command frame. ``fields`` is already JSON-able (properties, username, ...)."""

    name: str
    body_length: int
    phase: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Frame:
    more: bool
    long: bool
    length: int
    preview: bytes
    sha256: str | None = None  # of the whole frame, when the preview is cut

    @property
    def truncated(self) -> bool:
        return len(self.preview) < self.length

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"more": self.more, "long": self.long, "length": self.length}
        text = as_text(self.preview)
        if text is not None:
            out["text"] = text
        out["hex"] = self.preview.hex()
        if self.truncated:
            out["truncated"] = True
            out["shown"] = len(self.preview)
            if self.sha256 is not None:
                out["sha256"] = self.sha256
        return out


@dataclass(slots=True)
class Message:
    """A whole multipart message (every frame up to the one without MORE)."""

    frames: list[Frame]
    frame_count: int
    size: int
    #: ZMTP 3.0 subscription carried as a message: ("SUBSCRIBE"|"CANCEL", topic bytes).
    subscription: tuple[str, bytes] | None = None
    #: The first message after a resync: frames sent before the gap may be missing from it.
    after_gap: bool = False

    @property
    def frames_omitted(self) -> int:
        return self.frame_count - len(self.frames)


@dataclass(slots=True)
class DecodeError:
    """Bytes that cannot be decoded. ``fatal``: this direction stopped decoding."""

    error: str
    fatal: bool
    skipped: int = 0


Event = Greeting | NotZmtp | Joined | Resynced | Command | Message | DecodeError
