"""The sans-I/O Channel Access decoder: a circuit's (or a datagram's) bytes in, ``CAEvent``s out.

It frames the bytes into CA messages by their headers (caproto's
``bytes_needed_for_command``), has caproto parse each one (``messages``), remembers what
the circuit set up so that each event names its PV (``names``), and copes with what a
passive observer meets: messages split or batched across segments, oversized messages,
garbage, bytes lost from the capture, circuits joined mid-stream. Nothing here knows about
kitchens, flows or dumplings.
"""

from __future__ import annotations

import ctypes
import logging
import struct
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import caproto
from caproto import CLIENT, SERVER
from caproto._commands import Commands, bytes_needed_for_command

from .events import CAEvent, Side
from .messages import command_fields, read_command
from .names import CircuitNames
from .values import header_dict

log = logging.getLogger(__name__)

#: Size of the plain CA header (the extended one is 24 bytes).
HEADER_SIZE = 16
#: Parse failures in a row after which a direction is taken to be out of step for good.
MAX_CONSECUTIVE_ERRORS = 3
#: Bytes of an undecodable message shown (as hex) in an error event.
ERROR_HEX_BYTES = 48
#: Captured chunks tried for a message boundary after a gap before a direction stops.
RESYNC_TRIES = 64

_READ_RESPONSE_ID = caproto.ReadResponse.ID
_ROLE = {Side.CLIENT_TO_SERVER: CLIENT, Side.SERVER_TO_CLIENT: SERVER}
#: What a caller may name a side by: a ``Side``, its value, or anything equal to a Side
#: with the same hash (the kitchen's ``Direction``, a str enum with the same names).
_SIDES: dict[Any, Side] = {**{s: s for s in Side}, **{s.value: s for s in Side}}


def _side(direction: Any) -> Side:
    try:
        return _SIDES[direction]
    except (KeyError, TypeError):
        raise ValueError(f"not a side of a CA circuit: {direction!r}") from None


@dataclass(slots=True)
class _SideState:
    buffer: bytearray = field(default_factory=bytearray)
    skip: int = 0              # bytes of an oversized message still to discard
    errors_in_row: int = 0
    stopped: str | None = None
    ignored: int = 0           # bytes dropped after stopping, or while resyncing
    resync: bool = False       # after a gap (or joining mid-stream): looking for a boundary
    joining: bool = False      # the circuit's start was not captured
    resync_tries: int = 0
    missing: int = 0           # bytes lost in the gap(s) since the last boundary
    dropped: int = 0           # captured bytes dropped while looking for one


class ChannelAccessDecoder:
    """Frames one CA circuit's (or one UDP flow's) bytes and decodes each message.

    The role caproto needs is that of the *sender*: bytes the client sends are parsed with
    ``role=CLIENT`` (caproto looks the command id up among the Request classes), bytes the
    server sends with ``role=SERVER``. ``direction`` (a ``Side``, or its value) says which
    peer sent the bytes; every event carries the ``Side``.

    Memory is bounded: a message larger than ``max_message_bytes`` is skipped (its header
    is reported) instead of buffered, and each id map keeps at most ``max_names`` entries.
    CA has no sync marker. After a gap, decoding resumes at the first captured chunk that
    is whole messages (known command ids, payloads padded to 8 bytes as CA requires,
    lengths adding up to the chunk's end): CA peers write whole messages, so a TCP
    segment starts at one. A direction that keeps failing to parse, or finds no boundary
    within ``RESYNC_TRIES`` chunks of a gap, is stopped.
    """

    def __init__(self, *, max_message_bytes: int = 1 << 20, max_data_items: int = 64,
                 max_names: int = 4096, include_metadata: bool = True,
                 midstream: bool = False) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_data_items = max_data_items
        self.max_names = max_names
        self.include_metadata = include_metadata
        # ``midstream``: the capture began after the circuit opened, so the first captured
        # bytes of each direction may start inside a message: start at a boundary.
        self._dirs = {d: _SideState(resync=midstream, joining=midstream) for d in Side}
        #: What the circuit set up (channels, ioids, monitors, searches), by id.
        self.names = CircuitNames(max_names)
        self.messages = 0
        self.errors = 0

    @property
    def cids(self) -> OrderedDict[int, str]:
        return self.names.cids

    @property
    def sids(self) -> OrderedDict[int, str]:
        return self.names.sids

    @property
    def subscriptions(self) -> OrderedDict[int, str | None]:
        """subscription id -> pv (None when the channel is unknown): the active monitors."""
        return self.names.subscriptions

    # -- input ----------------------------------------------------------------------

    def feed(self, direction: Side, data: bytes, timestamp: float | None = None
             ) -> list[CAEvent]:
        """Bytes of a TCP circuit, in order; returns the messages they complete."""
        direction = _side(direction)
        state = self._dirs[direction]
        if state.stopped:
            state.ignored += len(data)
            return []
        if state.resync:
            return self._resync(direction, state, data, timestamp)
        if state.skip:
            dropped = min(state.skip, len(data))
            state.skip -= dropped
            data = data[dropped:]
        state.buffer += data
        return self._drain(direction, state, timestamp, sender=None)

    def datagram(self, direction: Side, data: bytes, timestamp: float | None = None,
                 sender: tuple[str, int] | None = None) -> list[CAEvent]:
        """One UDP payload (a datagram holds whole messages, often several)."""
        direction = _side(direction)
        state = _SideState(buffer=bytearray(data))
        events = self._drain(direction, state, timestamp, sender=sender or ("0.0.0.0", 0))
        if state.buffer and not state.stopped:
            events.append(self._error(direction, None, {"bytes": len(state.buffer)},
                                      len(state.buffer), "datagram ends inside a message",
                                      timestamp, bytes(state.buffer)))
        return events

    def gap(self, direction: Side, size: int, timestamp: float | None = None
            ) -> list[CAEvent]:
        """Bytes lost for good. Inside an oversized message being skipped anyway, nothing
        else is lost; otherwise the message in progress is dropped and the direction looks
        for the next message boundary (``_resync``)."""
        direction = _side(direction)
        state = self._dirs[direction]
        if state.stopped:
            state.ignored += size
            return []
        if state.skip >= size:
            state.skip -= size
            return []
        pending = len(state.buffer) + state.skip
        state.buffer = bytearray()
        state.skip = 0
        state.errors_in_row = 0
        if not state.resync:
            state.resync, state.resync_tries, state.missing, state.dropped = True, 0, 0, 0
        state.joining = False
        state.missing += size
        state.ignored += pending
        lost = f" ({pending} bytes of the message in progress dropped)" if pending else ""
        return [self._error(direction, None, {"missing": size}, size,
                            f"{size} bytes lost in capture{lost}; looking for the next "
                            f"message boundary", timestamp)]

    def _resync(self, direction: Side, state: _SideState, data: bytes,
                timestamp: float | None) -> list[CAEvent]:
        if not data:
            return []
        if not self._whole_messages(direction, data):
            state.ignored += len(data)
            state.dropped += len(data)
            state.resync_tries += 1
            if state.resync_tries < RESYNC_TRIES:
                return []
            state.resync = False
            where = "joining mid-stream" if state.joining else "after a gap"
            return [self._stop(direction, state, f"no message boundary in the {RESYNC_TRIES} "
                               f"chunks {where} ({state.dropped} bytes)", timestamp)]
        state.resync = False
        if state.joining:
            state.joining = False
            event = CAEvent(direction, "joined", None, {"skipped": state.dropped}, 0,
                            timestamp=timestamp)
        else:
            event = CAEvent(direction, "resynced", None,
                            {"missing": state.missing, "skipped": state.dropped}, 0,
                            timestamp=timestamp)
        state.buffer += data
        return [event, *self._drain(direction, state, timestamp, sender=None)]

    @staticmethod
    def _whole_messages(direction: Side, data: bytes) -> bool:
        """Whether ``data`` is one or more whole CA messages this side could send."""
        known = Commands[_ROLE[direction]]
        pos, n = 0, len(data)
        while pos < n:
            if n - pos < HEADER_SIZE:
                return False
            command, payload, _, count = struct.unpack_from(">HHHH", data, pos)
            head = HEADER_SIZE
            if payload == 0xFFFF and count == 0:   # extended header: 32-bit size and count
                if n - pos < HEADER_SIZE + 8:
                    return False
                (payload,) = struct.unpack_from(">I", data, pos + HEADER_SIZE)
                head += 8
            if command not in known or payload % 8:
                return False
            pos += head + payload
        return pos == n and n > 0

    def close(self, timestamp: float | None = None) -> list[CAEvent]:
        """End of the circuit: report what was left half-received."""
        events = []
        for direction, state in self._dirs.items():
            left = len(state.buffer) + state.skip
            if left and not state.stopped:
                events.append(self._error(direction, None, {"bytes": left}, left,
                                          "circuit ended inside a message", timestamp,
                                          bytes(state.buffer)))
            state.buffer = bytearray()
            state.skip = 0
        return events

    # -- framing --------------------------------------------------------------------

    def _drain(self, direction: Side, state: _SideState, timestamp: float | None,
               sender: tuple[str, int] | None) -> list[CAEvent]:
        events: list[CAEvent] = []
        buf = state.buffer
        offset = 0
        while not state.stopped and len(buf) - offset >= HEADER_SIZE:
            head = bytearray(buf[offset:offset + 24])
            header, _ = bytes_needed_for_command(head, _ROLE[direction])
            if header is None:  # extended header not complete yet
                break
            header_size = ctypes.sizeof(header)
            total = header_size + header.payload_size
            if header.payload_size > self.max_message_bytes:
                events.append(self._oversized(direction, header, total, timestamp))
                available = len(buf) - offset
                state.skip = max(0, total - available) if sender is None else 0
                offset += min(total, available)
                continue
            if len(buf) - offset < total:
                break
            message = bytearray(buf[offset:offset + total])
            offset += total
            event = self._parse(direction, message, header, timestamp, sender)
            events.append(event)
            if event.error is None:
                state.errors_in_row = 0
            else:
                state.errors_in_row += 1
                if state.errors_in_row >= MAX_CONSECUTIVE_ERRORS:
                    events.append(self._stop(direction, state,
                                             f"{state.errors_in_row} undecodable messages "
                                             "in a row", timestamp))
        if state.stopped:
            state.ignored += len(buf) - offset
            state.buffer = bytearray()
        else:
            del buf[:offset]
        return events

    def _parse(self, direction: Side, message: bytearray, header: Any,
               timestamp: float | None, sender: tuple[str, int] | None) -> CAEvent:
        role = _ROLE[direction]
        roles = (role, SERVER if role is CLIENT else CLIENT) if sender else (role,)
        command = None
        problem = ""
        for try_role in roles:
            # UDP on 5065 carries beacons *to* the repeater: a server-role message in the
            # client-to-server direction, so a datagram may need the other role.
            if header.command not in Commands[try_role]:
                problem = f"no {'client' if try_role is CLIENT else 'server'} command " \
                          f"with id {header.command}"
                continue
            try:
                if header.command == _READ_RESPONSE_ID and try_role is SERVER:
                    # caproto warns on every (pre-3.13) ReadResponse it parses; a sniffer
                    # sees those from old clients all day, and a warning per packet helps
                    # nobody. Rare enough for catch_warnings' cost.
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        command = read_command(message, sender, try_role)
                else:
                    command = read_command(message, sender, try_role)
                break
            except Exception as exc:  # caproto raises many kinds on malformed input
                problem = f"{type(exc).__name__}: {exc}"
        if command is None:
            return self._error(direction, header.command, header_dict(header), len(message),
                               problem or "undecodable", timestamp, bytes(message))
        name = type(command).__name__
        if (name == "EventAddResponse" and header.payload_size == 0
                and header.parameter2 in self.names.cancelling):
            # The wire has no cancel acknowledgement of its own: an empty EventAddResponse
            # for a subscription being cancelled is one (caproto's circuit does the same).
            command = caproto.EventCancelResponse.from_components(header)
            name = "EventCancelResponse"
        try:
            fields = command_fields(command, include_metadata=self.include_metadata,
                                    max_data_items=self.max_data_items)
        except Exception as exc:
            return self._error(direction, header.command, header_dict(header), len(message),
                               f"{name}: {type(exc).__name__}: {exc}", timestamp,
                               bytes(message))
        self.messages += 1
        event = CAEvent(direction, name, header.command, fields, len(message),
                        timestamp=timestamp)
        if name == "EventCancelResponse" and "sid" in fields:
            fields["sid"] = self.names.cancelling.get(fields.get("subscriptionid"),
                                                      fields["sid"])
        self.names.track(event)
        return event

    # -- errors ---------------------------------------------------------------------

    def _error(self, direction: Side, command_id: int | None, fields: dict[str, Any],
               size: int, reason: str, timestamp: float | None,
               raw: bytes = b"") -> CAEvent:
        self.errors += 1
        if raw:
            fields = {**fields, "hex": raw[:ERROR_HEX_BYTES].hex()}
        return CAEvent(direction, "error", command_id, fields, size, error=reason,
                       timestamp=timestamp)

    def _oversized(self, direction: Side, header: Any, total: int,
                   timestamp: float | None) -> CAEvent:
        cls = Commands[_ROLE[direction]].get(header.command)
        fields = header_dict(header)
        fields["name"] = cls.__name__ if cls else None
        return self._error(direction, header.command, fields, total,
                           f"message of {header.payload_size} payload bytes is over the "
                           f"{self.max_message_bytes}-byte limit; skipped", timestamp)

    def _stop(self, direction: Side, state: _SideState, reason: str,
              timestamp: float | None) -> CAEvent:
        state.stopped = reason
        state.ignored += len(state.buffer) + state.skip
        state.buffer = bytearray()
        state.skip = 0
        log.info("channel access: stopped decoding %s: %s", direction, reason)
        return self._error(direction, None, {}, 0, f"decoding stopped: {reason}", timestamp)

    def stopped(self, direction: Side) -> str | None:
        return self._dirs[_side(direction)].stopped


def looks_like_version_header(data: bytes) -> bool:
    """True for a CA VersionRequest/VersionResponse header (how every circuit starts)."""
    if len(data) < HEADER_SIZE:
        return False
    # parameter1/2 vary (caproto's server puts 1 in parameter1; UDP uses a sequence
    # number), so only the command, the empty payload and sane priority/version count.
    command, payload, priority, version = struct.unpack_from(">HHHH", data)
    return command == 0 and payload == 0 and priority <= 99 and 4 <= version <= 64

