"""ZeroMQ on the wire: ZMTP 3.0/3.1 greetings, commands and multipart messages.

No library parses ZMTP from captured bytes, so the framing is written here from the specs
(ZMTP 3.0 = RFC 23, 3.1 = RFC 37). ``ZmtpDecoder`` is the sans-I/O part and reads ONE
direction of a connection: it is fed the bytes in order and returns events. Frame bodies
are streamed rather than buffered whole, so a peer announcing a huge (or lying) frame
length costs a bounded amount of memory: only a preview of each frame is kept, and the
rest is hashed and counted. ``ZmtpChef`` keeps two decoders per TCP flow and turns their
events into zmtpdump-like dumplings (``127.0.0.1:47563 -> 127.0.0.1:7001  READY
Socket-Type=PUSH``).

ZMTP has no resync marker. After a gap in the capture the decoder drops what was in
progress and resumes at the first captured chunk that parses as whole frames (a TCP
segment starts at a frame boundary whenever the peer wrote whole messages, which is how
libzmq writes them), saying so; if none comes within ``RESYNC_TRIES`` chunks, or the stream
is out of step for another reason (reserved flag bits, an absurd length), that direction
stops decoding and says why, instead of reporting garbage as messages.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

from pydantic import Field

from netdumplings.chef import CloseReason, Direction, FlowChefOptions, StreamChef

GREETING_SIZE = 64
SIGNATURE_SIZE = 10
FLAG_MORE = 0x01
FLAG_LONG = 0x02
FLAG_COMMAND = 0x04
FLAG_RESERVED = 0xF8

#: Commands after which a peer's side of the handshake is finished.
HANDSHAKE_END = frozenset({"READY", "INITIATE", "ERROR"})
#: Commands whose bodies are CurveZMQ boxes (encrypted); only their names are meaningful.
CURVE_BOXED = frozenset({"HELLO", "WELCOME", "INITIATE", "READY", "MESSAGE"})
#: Captured chunks tried for a frame boundary when joining a connection mid-stream.
SYNC_TRIES = 8
#: Captured chunks tried for a frame boundary after a gap (the stream is known to be ZMTP).
RESYNC_TRIES = 64
#: Socket types that send subscriptions (as 0x01/0x00 messages before ZMTP 3.1).
SUBSCRIBERS = frozenset({"SUB", "XSUB"})

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


# -- the decoder --------------------------------------------------------------------------


_S_GREETING, _S_HEAD, _S_BODY, _S_STOPPED = range(4)


class ZmtpDecoder:
    """Sans-I/O reader of one direction of a ZMTP connection.

    ``feed(data)`` returns the events completed by ``data``; ``gap(size)`` and ``end()``
    report lost bytes and the end of the stream. It never raises on input and holds at most
    about ``max_shown * max_frames + max_command`` bytes, whatever the peer announces.
    """

    def __init__(self, max_shown: int = 2048, max_frames: int = 64,
                 max_command: int = 65536, max_frame: int = 1 << 32,
                 midstream: bool = False) -> None:
        self.max_shown = max_shown
        self.max_frames = max_frames
        self.max_command = max_command
        self.max_frame = max_frame
        self.greeting: Greeting | None = None
        self.socket_type: str | None = None
        #: The peer's greeting version, set by whoever sees both directions (the chef); the
        #: connection speaks the lower of the two versions.
        self.peer_version: tuple[int, int] | None = None
        self.handshake_done = False
        self.rejected = False
        self.messages = 0
        self.commands = 0
        self.errors = 0
        self.skipped_bytes = 0
        self.bytes_seen = 0
        self._state = _S_GREETING
        self._buf = bytearray()          # greeting or frame header being collected
        self._flags = 0
        self._size = 0                   # declared size of the frame being read
        self._left = 0                   # body bytes still to come
        self._keep = 0                   # body bytes worth keeping
        self._body = bytearray()
        self._hash: Any = None
        self._parts: list[Frame] = []    # frames of the message in progress
        self._part_count = 0
        self._part_size = 0
        #: The connection was already open when the capture began: no greeting to expect.
        self._midstream = midstream
        self._sync_tries = 0
        #: After a gap: looking for a frame boundary (``_missing`` bytes lost, ``_dropped``
        #: captured bytes dropped since), then flagging the first message.
        self._resync = False
        self._missing = 0
        self._dropped = 0
        self._after_gap = False

    # -- public -------------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        return self._state == _S_STOPPED

    @property
    def buffered(self) -> int:
        """Bytes held for this direction (the memory bound the tests check)."""
        return (len(self._buf) + len(self._body)
                + sum(len(f.preview) for f in self._parts))

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        self.bytes_seen += len(data)
        view = memoryview(data)
        pos, n = 0, len(view)
        if self._resync:
            if not data or not self._sync(data, events):
                return events
        elif self._midstream and self._state == _S_GREETING and not self._buf and data:
            if data[0] != 0xFF:
                if not self._sync(data, events):
                    return events
            self._midstream = False
        while pos < n:
            state = self._state
            if state == _S_STOPPED:
                self.skipped_bytes += n - pos
                break
            if state == _S_GREETING:
                take = min(GREETING_SIZE - len(self._buf), n - pos)
                self._buf += view[pos:pos + take]
                pos += take
                self._check_greeting(events)
            elif state == _S_HEAD:
                self._buf.append(view[pos])
                pos += 1
                self._check_head(events)
            else:  # _S_BODY
                take = min(self._left, n - pos)
                chunk = view[pos:pos + take]
                room = self._keep - len(self._body)
                if room > 0:
                    self._body += chunk[:room]
                if self._hash is not None:
                    self._hash.update(chunk)
                self._left -= take
                pos += take
                if self._left == 0:
                    self._frame_done(events)
        return events

    def gap(self, size: int) -> list[Event]:
        """Bytes were lost, and with them the frame boundaries: drop what was in progress
        and look for a boundary in the chunks that follow (see ``_sync``)."""
        self.skipped_bytes += size
        if self._state == _S_STOPPED:
            return []
        self.errors += 1
        error = (f"{size} bytes missing from the capture; looking for the next frame "
                 f"boundary{self._drop_partial()}")
        self._left = 0
        self._state = _S_HEAD
        self._midstream = False
        if not self._resync:
            self._resync, self._missing, self._dropped, self._sync_tries = True, 0, 0, 0
        self._missing += size
        self._after_gap = False
        return [DecodeError(error, False, size)]

    def end(self) -> list[Event]:
        """The stream ended: report what was cut off."""
        state = self._state
        if state == _S_GREETING and self._buf:
            partial = bytes(self._buf)
            verdict = self._legacy(partial, final=True)
            self._state = _S_STOPPED
            if verdict is not None:
                return [NotZmtp(verdict, partial[:16].hex())]
            self.errors += 1
            return [DecodeError(f"stream ended inside the greeting ({len(partial)} of "
                                f"{GREETING_SIZE} bytes)", True)]
        events: list[Event] = []
        if state == _S_HEAD and self._buf:
            events.append(self._stop("stream ended inside a frame header", 0))
        elif state == _S_BODY:
            got = self._size - self._left
            events.append(self._stop(f"stream ended inside a frame ({got} of {self._size} "
                                     f"bytes)", 0))
        if self._parts or self._part_count:
            self.errors += 1
            events.append(DecodeError(f"stream ended inside a multipart message "
                                      f"({self._part_count} frames, last had MORE)", True))
            self._parts, self._part_count, self._part_size = [], 0, 0
        self._state = _S_STOPPED
        return events

    def _sync(self, data: bytes, events: list[Event]) -> bool:
        """Mid-stream or after a gap: start at this chunk if it is whole frames, else drop
        it (counted). Whole frames ending exactly at the chunk's end are what a boundary
        looks like; random bytes rarely pass (reserved flag bits, lengths that must add up)."""
        pos, n = 0, len(data)
        while pos < n:
            flags = data[pos]
            need = 9 if flags & FLAG_LONG else 2
            if flags & FLAG_RESERVED or pos + need > n:
                break
            pos += need + int.from_bytes(data[pos + 1:pos + need], "big")
        if pos == n:
            self._state = _S_HEAD
            if self._resync:
                self._resync = False
                self._after_gap = True
                events.append(Resynced(self._missing, self._dropped))
            else:
                events.append(Joined(self.skipped_bytes))
            return True
        self.skipped_bytes += n
        self._sync_tries += 1
        if self._resync:
            self._dropped += n
            if self._sync_tries >= RESYNC_TRIES:
                self._resync = False
                events.append(self._stop(
                    f"no frame boundary in the {RESYNC_TRIES} chunks after the gap "
                    f"({self._dropped} bytes); decoding of this direction stopped", 0))
            return False
        if self._sync_tries >= SYNC_TRIES:
            self._state = _S_STOPPED
            events.append(NotZmtp("not ZMTP (joined mid-stream, no frame boundary found)",
                                  data[:16].hex()))
        return False

    # -- greeting ------------------------------------------------------------------------

    def _legacy(self, head: bytes, final: bool = False) -> str | None:
        """Name what a peer speaks when it is not ZMTP 3.x (None: cannot tell yet / is 3.x)."""
        if not head:
            return None
        if head[0] != 0xFF:
            # ZMTP 1.0 opens with its identity frame: a short length, then flags 0x00.
            if len(head) < 2:
                return "not ZMTP" if final else None
            return "ZMTP 1.0" if head[1] == 0x00 and head[0] >= 1 else "not ZMTP"
        if len(head) < SIGNATURE_SIZE:
            return "not ZMTP" if final else None
        if not head[9] & 0x01:
            return "ZMTP 1.0"  # an identity frame with an 8-byte length
        if head[9] != 0x7F:
            return "not ZMTP"
        if len(head) < SIGNATURE_SIZE + 1:
            return None
        if head[10] < 3:
            return "ZMTP 2.0" if head[10] == 1 else f"ZMTP 2.0 (revision {head[10]})"
        return None

    def _check_greeting(self, events: list[Event]) -> None:
        buf = self._buf
        verdict = self._legacy(bytes(buf[:SIGNATURE_SIZE + 1]))
        if verdict is not None:
            events.append(NotZmtp(verdict, bytes(buf[:16]).hex()))
            self.skipped_bytes += len(buf)
            self._buf = bytearray()
            self._state = _S_STOPPED
            return
        if len(buf) < GREETING_SIZE:
            return
        raw = bytes(buf)
        self._buf = bytearray()
        mech_raw = raw[12:32].rstrip(b"\x00")
        mech = as_text(mech_raw)
        self.greeting = Greeting(
            version=(raw[10], raw[11]),
            mechanism=mech if mech is not None else mech_raw.hex(),
            as_server=bool(raw[32]),
            signature_hex=raw[:SIGNATURE_SIZE].hex(),
            padding_hex=raw[1:9].hex(),
        )
        events.append(self.greeting)
        self._state = _S_HEAD

    # -- frames --------------------------------------------------------------------------

    def _check_head(self, events: list[Event]) -> None:
        buf = self._buf
        flags = buf[0]
        if flags & FLAG_RESERVED:
            self._buf = bytearray()
            events.append(self._stop(f"frame flags 0x{flags:02x} have reserved bits set: not "
                                     f"a ZMTP frame; decoding of this direction stopped", 1))
            return
        need = 9 if flags & FLAG_LONG else 2
        if len(buf) < need:
            return
        size = int.from_bytes(buf[1:need], "big")
        self._buf = bytearray()
        if size > self.max_frame:
            events.append(self._stop(f"frame claims {size} bytes (limit {self.max_frame}): "
                                     f"length is not believable; decoding of this direction "
                                     f"stopped", 0))
            return
        is_command = bool(flags & FLAG_COMMAND)
        self._flags = flags
        self._size = self._left = size
        self._keep = min(size, self.max_command if is_command else self.max_shown)
        if not is_command and self._part_count >= self.max_frames:
            self._keep = 0  # frames past the cap are only counted
        self._body = bytearray()
        shown = not is_command and self._part_count < self.max_frames
        self._hash = hashlib.sha256() if shown and size > self._keep else None
        if size == 0:
            self._frame_done(events)
        else:
            self._state = _S_BODY

    def _frame_done(self, events: list[Event]) -> None:
        flags, body, size = self._flags, bytes(self._body), self._size
        sha = self._hash.hexdigest() if self._hash is not None else None
        self._body = bytearray()
        self._hash = None
        self._state = _S_HEAD
        if flags & FLAG_COMMAND:
            if flags & FLAG_MORE:
                self.errors += 1
                events.append(DecodeError("command frame has the MORE flag (not allowed); "
                                          "read as a single command", False))
            events.append(self._command(body, size))
            return
        frame = Frame(bool(flags & FLAG_MORE), bool(flags & FLAG_LONG), size, body, sha)
        if self._part_count < self.max_frames:
            self._parts.append(frame)
        self._part_count += 1
        self._part_size += size
        if frame.more:
            return
        msg = Message(self._parts, self._part_count, self._part_size)
        if self._after_gap:
            msg.after_gap = True
            self._after_gap = False
        self._parts, self._part_count, self._part_size = [], 0, 0
        self.messages += 1
        msg.subscription = self._old_subscription(msg)
        events.append(msg)

    def _old_subscription(self, msg: Message) -> tuple[str, bytes] | None:
        """Before ZMTP 3.1 a SUB says (un)subscribe with a 0x01/0x00-prefixed message."""
        if self.socket_type not in SUBSCRIBERS or msg.frame_count != 1:
            return None
        versions = [v for v in (self.greeting.version if self.greeting else None,
                                self.peer_version) if v is not None]
        if not versions or min(versions) >= (3, 1):
            return None
        data = msg.frames[0].preview
        if data[:1] == b"\x01":
            return "SUBSCRIBE", data[1:]
        if data[:1] == b"\x00":
            return "CANCEL", data[1:]
        return None

    def _stop(self, error: str, skipped: int) -> DecodeError:
        self.errors += 1
        self.skipped_bytes += skipped
        self._state = _S_STOPPED
        error += self._drop_partial()
        return DecodeError(error, True, skipped)

    def _drop_partial(self) -> str:
        """Forget the frame and message in progress; what was lost, for the error text."""
        self._buf = bytearray()
        self._body = bytearray()
        self._hash = None
        lost = (f" (lost: a multipart message of {self._part_count} frames so far)"
                if self._part_count else "")
        self._parts, self._part_count, self._part_size = [], 0, 0
        return lost

    # -- commands ------------------------------------------------------------------------

    def _command(self, body: bytes, size: int) -> Command:
        self.commands += 1
        fields: dict[str, Any] = {}
        if len(body) < size:
            fields["truncated"] = True
            fields["shown"] = len(body)
            self.errors += 1
        # libzmq 4.3's ERROR is written with a C escape that eats the 'E': "\x5eRROR".
        if body[:5] == b"^RROR":
            name, data = "ERROR", body[5:]
            fields["malformed_name"] = True
        elif body:
            name_len = body[0]
            raw_name = body[1:1 + name_len]
            if len(raw_name) < name_len:
                return self._bad_command(body, size, fields, "command name is cut short")
            text = as_text(raw_name)
            name = text if text is not None else "0x" + raw_name.hex()
            data = body[1 + name_len:]
        else:
            return self._bad_command(body, size, fields, "empty command frame")
        phase = "traffic" if self.handshake_done else "handshake"
        mechanism = self.greeting.mechanism if self.greeting else "NULL"
        try:
            if mechanism == "CURVE" and name in CURVE_BOXED:
                fields["encrypted"] = True
                fields["note"] = "CurveZMQ box: contents are encrypted"
            else:
                self._command_fields(name, data, mechanism, fields)
        except (IndexError, ValueError) as exc:  # pragma: no cover - parsers check lengths
            fields["error"] = f"cannot parse {name}: {exc}"
            self.errors += 1
        if name == "ERROR":
            fields["body_hex"] = body[:self.max_shown].hex()  # the whole body, name included
        if name in HANDSHAKE_END:
            self.handshake_done = True
        if name == "ERROR":
            self.rejected = True
        return Command(name, size, phase, fields)

    def _bad_command(self, body: bytes, size: int, fields: dict[str, Any],
                     why: str) -> Command:
        self.errors += 1
        fields["error"] = why
        fields["body_hex"] = body[:self.max_shown].hex()
        return Command("?", size, "traffic" if self.handshake_done else "handshake", fields)

    def _command_fields(self, name: str, data: bytes, mechanism: str,
                        fields: dict[str, Any]) -> None:
        if name in ("READY", "INITIATE"):
            props, hexes, err = parse_properties(data, self.max_shown)
            fields["properties"] = props
            fields["properties_hex"] = hexes
            if err:
                fields["error"] = err
                self.errors += 1
            sock = props.get("Socket-Type")
            if sock is not None:
                self.socket_type = sock
        elif name == "ERROR":
            n = data[0] if data else 0
            reason = data[1:1 + n]
            fields["reason"] = show(reason)
            if len(reason) < n:
                fields["error"] = "reason is cut short"
                self.errors += 1
        elif name in ("SUBSCRIBE", "CANCEL"):
            fields["topic"] = show(data[:self.max_shown])
            fields["topic_hex"] = data[:self.max_shown].hex()
            fields["topic_length"] = len(data)
        elif name == "PING":
            if len(data) < 2:
                fields["error"] = "PING shorter than its 2-byte TTL"
                self.errors += 1
                return
            ttl = int.from_bytes(data[:2], "big")
            fields["ttl_deciseconds"] = ttl
            fields["ttl_seconds"] = ttl / 10
            fields["context_hex"] = data[2:18].hex()
        elif name == "PONG":
            fields["context_hex"] = data[:16].hex()
        elif name == "HELLO" and mechanism == "PLAIN":
            n = data[0] if data else 0
            user = data[1:1 + n]
            rest = data[1 + n:]
            m = rest[0] if rest else 0
            password = rest[1:1 + m]
            fields["username"] = show(user)
            # The password is on the wire in clear; a sniffer must not spread it further.
            fields["password"] = "*" * 8 if m else ""
            fields["password_length"] = m
            if len(user) < n or not rest or len(password) < m:
                fields["error"] = "HELLO is cut short"
                self.errors += 1
        elif name == "WELCOME":
            pass  # PLAIN WELCOME has no body
        elif data:
            fields["body_hex"] = data[:self.max_shown].hex()
            fields["body_text"] = as_text(data[:self.max_shown])


def parse_properties(data: bytes, max_shown: int = 2048
                     ) -> tuple[dict[str, str], dict[str, str], str | None]:
    """READY/INITIATE metadata: name-length byte, name, 4-byte value length, value.

    Returns (name -> value shown as text or hex, name -> value hex, error or None); what
    parses before an inconsistency is kept.
    """
    props: dict[str, str] = {}
    hexes: dict[str, str] = {}
    pos, n = 0, len(data)
    while pos < n:
        name_len = data[pos]
        if name_len == 0 or pos + 1 + name_len + 4 > n:
            return props, hexes, f"property at offset {pos} is cut short or has no name"
        name = show(data[pos + 1:pos + 1 + name_len])
        pos += 1 + name_len
        value_len = int.from_bytes(data[pos:pos + 4], "big")
        pos += 4
        if pos + value_len > n:
            return props, hexes, (f"property {name!r} claims {value_len} bytes, "
                                  f"{n - pos} left")
        value = data[pos:pos + min(value_len, max_shown)]
        props[name] = show(value)
        hexes[name] = value.hex()
        pos += value_len
    return props, hexes, None


# -- the chef -------------------------------------------------------------------------------


def _frame_brief(frame: Frame, width: int = 40) -> str:
    text = as_text(frame.preview)
    if text is not None:
        shown = text if len(text) <= width else text[:width] + "..."
        body = repr(shown)
    else:
        hx = frame.preview[:width // 2].hex()
        body = "0x" + hx + ("..." if frame.length > width // 2 else "")
    if frame.length > len(frame.preview) or (text is not None and len(text) > width):
        body += f" ({frame.length} bytes)"
    return body


def command_brief(cmd: Command) -> str:
    """The part of a summary line after the addresses, zmtpdump style."""
    f = cmd.fields
    parts = [cmd.name]
    if "properties" in f:
        parts += [f"{k}={v}" for k, v in f["properties"].items()]
    if cmd.name == "ERROR" and "reason" in f:
        parts.append(f"reason={f['reason']!r}")
    if cmd.name in ("SUBSCRIBE", "CANCEL") and "topic" in f:
        parts.append(repr(f["topic"]))
    if cmd.name == "PING" and "ttl_deciseconds" in f:
        parts.append(f"ttl={f['ttl_seconds']}s")
        if f["context_hex"]:
            parts.append(f"context={f['context_hex']}")
    if cmd.name == "PONG" and f.get("context_hex"):
        parts.append(f"context={f['context_hex']}")
    if "username" in f:
        parts.append(f"username={f['username']} password={f['password'] or '(empty)'}")
    if f.get("encrypted"):
        parts.append(f"(encrypted, {cmd.body_length} bytes)")
    if f.get("error"):
        parts.append(f"[error: {f['error']}]")
    return " ".join(parts)


class _FlowDecoders:
    """A flow's two decoders plus what is said once per flow."""

    __slots__ = ("decoders", "reported_not_zmtp")

    def __init__(self, make: Any) -> None:
        self.decoders = {Direction.CLIENT_TO_SERVER: make(), Direction.SERVER_TO_CLIENT: make()}
        self.reported_not_zmtp = False


class ZmtpChef(StreamChef):
    """ZeroMQ connections: one dumpling per greeting, command and whole multipart message.

    ZeroMQ endpoints use any port, so flows are found by their greeting signature
    (``detect``) as well as by the ``ports`` option.
    """

    default_ports: ClassVar[tuple[int, ...]] = ()

    class Options(FlowChefOptions):
        #: Bytes of each frame shown (the rest is counted and hashed).
        max_shown: int = Field(2048, ge=0, le=1 << 20)
        #: Frames of one message shown (the rest are counted).
        max_frames: int = Field(64, ge=1, le=10_000)
        #: Bytes of a command body kept for decoding.
        max_command: int = Field(65536, ge=64, le=1 << 24)
        #: A declared frame length above this is taken as a lie (stream out of step).
        max_frame: int = Field(1 << 32, ge=0)
        #: Also make a dumpling for each connection's end (handshake result, counts).
        report_close: bool = True

    def _configure(self) -> None:
        super()._configure()
        self.errors = 0

    def detect(self, flow: Any, direction: Direction, data: bytes) -> bool:
        # Every ZMTP 2.0/3.x peer opens with 0xFF, 8 padding bytes, 0x7F.
        return len(data) >= SIGNATURE_SIZE and data[0] == 0xFF and data[9] == 0x7F

    def new_flow_state(self, flow: Any) -> _FlowDecoders:
        o = self.options
        midstream = not getattr(flow, "roles_known", True)
        return _FlowDecoders(lambda: ZmtpDecoder(o.max_shown, o.max_frames, o.max_command,
                                                 o.max_frame, midstream))

    def on_data(self, flow: Any, direction: Direction, data: bytes,
                timestamp: float) -> Iterator[dict[str, Any]]:
        state: _FlowDecoders = self.flow_state(flow)
        decoder = state.decoders[direction]
        try:
            events = decoder.feed(data)
        except Exception as exc:  # a decoder bug must not lose the flow's other direction
            events = [self._crashed(decoder, exc)]
        yield from self._payloads(flow, direction, state, events, timestamp)

    def on_gap(self, flow: Any, direction: Direction, size: int) -> Iterator[dict[str, Any]]:
        state: _FlowDecoders = self.flow_state(flow)
        yield from self._payloads(flow, direction, state, state.decoders[direction].gap(size),
                                  None)

    def on_close(self, flow: Any, reason: CloseReason) -> Iterator[dict[str, Any]]:
        state: _FlowDecoders = self.flow_state(flow)
        for direction, decoder in state.decoders.items():
            try:
                events = decoder.end()
            except Exception as exc:
                events = [self._crashed(decoder, exc)]
            yield from self._payloads(flow, direction, state, events,
                                      getattr(flow, "last_seen", None))
        if not self.options.report_close or state.reported_not_zmtp:
            return
        c2s = state.decoders[Direction.CLIENT_TO_SERVER]
        s2c = state.decoders[Direction.SERVER_TO_CLIENT]
        if all(d.greeting is None and not d.messages and not d.commands
               for d in (c2s, s2c)):
            return
        result = handshake_result(c2s, s2c)
        counts = {str(d): {"messages": dec.messages, "commands": dec.commands,
                           "errors": dec.errors, "skipped_bytes": dec.skipped_bytes}
                  for d, dec in state.decoders.items()}
        yield {
            "flow": flow.describe(),
            "src": flow.client_str,
            "dst": flow.server_str,
            "direction": str(Direction.CLIENT_TO_SERVER),
            "timestamp": getattr(flow, "last_seen", None),
            "type": "close",
            "reason": str(reason),
            "handshake_result": result,
            "client_socket": c2s.socket_type,
            "server_socket": s2c.socket_type,
            "counts": counts,
            "summary": (f"{flow.label()}  CLOSED ({reason}) handshake={result} "
                        f"{c2s.socket_type or '?'}->{s2c.socket_type or '?'} "
                        f"messages {c2s.messages}/{s2c.messages}"),
        }

    # -- events to payloads ----------------------------------------------------------------

    def _crashed(self, decoder: ZmtpDecoder, exc: Exception) -> DecodeError:
        self.report_error("ZMTP decoder failed; direction stopped", exc)
        decoder._state = _S_STOPPED
        decoder.errors += 1
        return DecodeError(f"decoder error {type(exc).__name__}: {exc}", True)

    def _payloads(self, flow: Any, direction: Direction, state: _FlowDecoders,
                  events: list[Event], timestamp: float | None) -> Iterator[dict[str, Any]]:
        for ev in events:
            if isinstance(ev, Greeting):
                peer = state.decoders[direction.reverse]
                peer.peer_version = ev.version
                if peer.greeting is not None:
                    state.decoders[direction].peer_version = peer.greeting.version
            elif isinstance(ev, NotZmtp):
                if state.reported_not_zmtp:
                    continue
                state.reported_not_zmtp = True
            elif isinstance(ev, DecodeError):
                self.errors += 1
                self.logger.info("%s: %s", flow.label(direction), ev.error)
            yield self._payload(flow, direction, ev, timestamp)

    def _payload(self, flow: Any, direction: Direction, ev: Event,
                 timestamp: float | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "flow": flow.describe(),
            "src": flow.src(direction),
            "dst": flow.dst(direction),
            "direction": str(direction),
            "timestamp": timestamp,
        }
        label = flow.label(direction)
        if isinstance(ev, Greeting):
            major, minor = ev.version
            out.update(type="greeting", version=[major, minor], mechanism=ev.mechanism,
                       as_server=ev.as_server, signature_hex=ev.signature_hex,
                       padding_hex=ev.padding_hex)
            out["summary"] = (f"{label}  GREETING ZMTP {major}.{minor} {ev.mechanism} "
                              f"as-server={int(ev.as_server)}")
        elif isinstance(ev, Command):
            out.update(type="command", command=ev.name, phase=ev.phase,
                       body_length=ev.body_length, **ev.fields)
            out["summary"] = f"{label}  {command_brief(ev)}"
        elif isinstance(ev, Message):
            out.update(type="message", frame_count=ev.frame_count, size=ev.size,
                       frames=[f.view() for f in ev.frames])
            if ev.frames_omitted:
                out["frames_omitted"] = ev.frames_omitted
            shown = ev.frames[:8]
            brief = " | ".join(_frame_brief(f) for f in shown)
            if ev.frame_count > len(shown):
                brief += f" | ... {ev.frame_count - len(shown)} more"
            plural = "frame" if ev.frame_count == 1 else "frames"
            out["summary"] = f"{label}  MESSAGE {ev.frame_count} {plural}: {brief}"
            if ev.subscription is not None:
                kind, topic = ev.subscription
                out["subscription"] = {"command": kind, "topic": show(topic)}
                out["summary"] += f" ({kind} {show(topic)!r}, ZMTP 3.0 style)"
            if ev.after_gap:
                out["after_gap"] = True
                out["summary"] += " (first after a gap: frames before it may be missing)"
        elif isinstance(ev, Joined):
            out.update(type="joined", skipped=ev.skipped)
            out["summary"] = (f"{label}  JOINED mid-stream (greeting not captured"
                              f"{f', {ev.skipped} bytes skipped' if ev.skipped else ''})")
        elif isinstance(ev, Resynced):
            out.update(type="resynced", missing=ev.missing, skipped=ev.skipped)
            out["summary"] = (f"{label}  RESYNCED at a frame boundary after {ev.missing} "
                              f"missing bytes"
                              f"{f' ({ev.skipped} more skipped)' if ev.skipped else ''}")
        elif isinstance(ev, NotZmtp):
            out.update(type="not_zmtp", protocol=ev.protocol, first_bytes_hex=ev.first_bytes_hex)
            out["summary"] = f"{label}  {ev.protocol}: not decoded (first bytes {ev.first_bytes_hex})"
        else:
            out.update(type="error", error=ev.error, fatal=ev.fatal, skipped=ev.skipped)
            out["summary"] = f"{label}  ERROR {ev.error}"
        return out


def handshake_result(c2s: ZmtpDecoder, s2c: ZmtpDecoder) -> str:
    """ok (both sides finished), rejected (an ERROR command) or incomplete."""
    if c2s.rejected or s2c.rejected:
        return "rejected"
    if c2s.handshake_done and s2c.handshake_done:
        return "ok"
    return "incomplete"
