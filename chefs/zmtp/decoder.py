"""ZeroMQ on the wire: ZMTP 3.0/3.1 greetings, commands and multipart messages.

No library parses ZMTP from captured bytes, so the framing is written here from the specs
(ZMTP 3.0 = RFC 23, 3.1 = RFC 37). ``ZmtpDecoder`` is the sans-I/O part and reads ONE
direction of a connection: it is fed the bytes in order and returns events. Frame bodies
are streamed rather than buffered whole, so a peer announcing a huge (or lying) frame
length costs a bounded amount of memory: only a preview of each frame is kept, and the
rest is hashed and counted. Command bodies are read by ``commands.py``; the events are
the dataclasses of ``events.py``. This module imports nothing from the framework (no chef,
flow, kitchen or dumpling, no scapy, sockets or asyncio): it is usable on its own. The
chef shell (``chef.py``) keeps two decoders per TCP flow and turns their events into
zmtpdump-like dumplings (``127.0.0.1:47563 -> 127.0.0.1:7001  READY Socket-Type=PUSH``).

ZMTP has no resync marker. After a gap in the capture the decoder drops what was in
progress and resumes at the first captured chunk that parses as whole frames (a TCP
segment starts at a frame boundary whenever the peer wrote whole messages, which is how
libzmq writes them), saying so; if none comes within ``RESYNC_TRIES`` chunks, or the stream
is out of step for another reason (reserved flag bits, an absurd length), that direction
stops decoding and says why, instead of reporting garbage as messages.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .commands import command_fields
from .events import (Command, DecodeError, Event, Frame, Greeting, Joined, Message, NotZmtp,
                     Resynced, as_text)

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

    def halt(self) -> None:
        """Stop decoding this direction for good (what a caller does after a decoder bug,
        so that a broken state is not read any further); later bytes are only counted."""
        self._state = _S_STOPPED

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
                self.errors += command_fields(name, data, mechanism, fields, self.max_shown)
                sock = fields.get("properties", {}).get("Socket-Type")
                if sock is not None:
                    self.socket_type = sock
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


def handshake_result(c2s: ZmtpDecoder, s2c: ZmtpDecoder) -> str:
    """ok (both sides finished), rejected (an ERROR command) or incomplete."""
    if c2s.rejected or s2c.rejected:
        return "rejected"
    if c2s.handshake_done and s2c.handshake_done:
        return "ok"
    return "incomplete"
