"""EPICS Channel Access: every CA command on the wire, with the PV it concerns.

``ChannelAccessDecoder`` is the sans-I/O part. It frames the bytes of one TCP virtual
circuit (or one UDP datagram) into CA messages and leaves the decoding of each message to
caproto's own parser, so this module never re-implements the protocol. What caproto
does not do for a passive observer is remember what a circuit has set up: a
``ReadNotifyResponse`` only carries an ioid, a monitor update only a subscription id. The
decoder keeps the circuit's cid/sid/ioid/subscription maps (bounded) so that every event
names its PV, and pairs notify requests with their responses for latency.

``ChannelAccessChef`` is the thin shell: one decoder per flow, UDP search names resolved
across flows (a broadcast search and its unicast reply are two different UDP flows), and
an interval summary of PVs, searches, circuits and monitors.
"""

from __future__ import annotations

import ctypes
import enum
import inspect
import logging
import math
import struct
import warnings
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import caproto
from caproto import CLIENT, SERVER
from caproto._commands import (Commands, bytes_needed_for_command, extract_data,
                               extract_metadata, read_datagram, read_from_bytestream)
from caproto._dbr import DBR_TYPES, MAX_STRING_SIZE, ChannelType, native_type
from caproto._status import CAStatusCode

from netdumplings.chef import CloseReason, Direction, FlowChef, FlowChefOptions

log = logging.getLogger(__name__)


#: Size of the plain CA header (the extended one is 24 bytes).
HEADER_SIZE = 16
#: Names a broadcast search reply may carry instead of the server's address.
ANY_ADDRESS = {"255.255.255.255", "0.0.0.0"}
#: Characters of a summary line before it is cut.
MAX_SUMMARY_CHARS = 400
#: Items of a data array shown in the summary line (the payload shows more).
SUMMARY_ITEMS = 8
#: Parse failures in a row after which a direction is taken to be out of step for good.
MAX_CONSECUTIVE_ERRORS = 3
#: Hex characters of an undecodable message shown in an error event.
ERROR_HEX_BYTES = 48
#: Captured chunks tried for a message boundary after a gap before a direction stops.
RESYNC_TRIES = 64

_READ_RESPONSE_ID = caproto.ReadResponse.ID
_ROLE = {Direction.CLIENT_TO_SERVER: CLIENT, Direction.SERVER_TO_CLIENT: SERVER}
#: Commands whose response pairs with a request by ioid.
_IOID_REQUESTS = {"ReadNotifyRequest", "WriteNotifyRequest", "ReadRequest"}
_IOID_RESPONSES = {"ReadNotifyResponse", "WriteNotifyResponse", "ReadResponse"}
#: Commands carrying a data array and (for DBR_STS/TIME/GR/CTRL types) metadata.
_DATA_COMMANDS = {"EventAddResponse", "ReadResponse", "ReadNotifyResponse",
                  "WriteRequest", "WriteNotifyRequest"}


# -- events ---------------------------------------------------------------------------


@dataclass(slots=True)
class CAEvent:
    """One CA message, decoded (``error`` is None) or not (``error`` says why).

    ``fields`` are the arguments of caproto's command class, already JSON-able;
    ``pv`` is the channel name when the circuit's history tells it; ``latency`` is the
    capture-time delay from the matching request for notify and search responses."""

    direction: Direction
    command: str
    command_id: int | None
    fields: dict[str, Any]
    size: int
    pv: str | None = None
    latency: float | None = None
    error: str | None = None
    timestamp: float | None = None


# -- turning caproto values into JSON ------------------------------------------------


def _text(raw: bytes | bytearray | memoryview) -> str:
    """Bytes as text when printable (NUL padding dropped), else hex."""
    data = bytes(raw)
    end = data.find(b"\0")
    trimmed = data if end < 0 else data[:end]
    try:
        text = trimmed.decode("utf-8")
    except UnicodeDecodeError:
        text = trimmed.decode("latin-1")
    if text.isprintable() and (end < 0 or not data[end:].strip(b"\0")):
        return text
    return data.hex()


def jsonable(value: Any, max_items: int = 64) -> Any:
    """caproto values (enums, status codes, DBR structs, arrays, bytes) as JSON values."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, CAStatusCode):
        return value.name
    if isinstance(value, enum.Enum):
        name = value.name
        return name if name is not None else int(value.value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _text(value)
    if isinstance(value, ctypes.Array):
        return jsonable(list(value)[:max_items], max_items)
    if isinstance(value, ctypes.Structure):
        return {name: jsonable(getattr(value, name), max_items)
                for name, *_ in type(value)._fields_}
    if hasattr(value, "tolist"):  # numpy arrays and scalars, array.array
        value = value.tolist()
        if not isinstance(value, list):
            return jsonable(value, max_items)
    try:
        items = list(value)[:max_items]
    except TypeError:
        return repr(value)[:200]
    return [jsonable(v, max_items) for v in items]


_PARAMS: dict[type, tuple[str, ...]] = {}


def _params(cls: type) -> tuple[str, ...]:
    """The constructor arguments of a caproto command class: its fields, in wire order."""
    params = _PARAMS.get(cls)
    if params is None:
        params = _PARAMS[cls] = tuple(inspect.signature(cls).parameters)
    return params


# -- the decoder ----------------------------------------------------------------------


@dataclass(slots=True)
class _Direction:
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
    server sends with ``role=SERVER``.

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
        self._dirs = {d: _Direction(resync=midstream, joining=midstream) for d in Direction}
        self.cids: OrderedDict[int, str] = OrderedDict()
        self.sids: OrderedDict[int, str] = OrderedDict()
        #: ioid -> (pv, request time, request command)
        self.ioids: OrderedDict[int, tuple[str | None, float | None, str]] = OrderedDict()
        #: subscription id -> pv (None when the channel is unknown): the active monitors
        self.subscriptions: OrderedDict[int, str | None] = OrderedDict()
        self.searches: OrderedDict[int, tuple[str, float | None]] = OrderedDict()
        #: subscription id -> sid, for cancels not yet acknowledged
        self._cancelling: OrderedDict[int, int] = OrderedDict()
        self.messages = 0
        self.errors = 0

    # -- input ----------------------------------------------------------------------

    def feed(self, direction: Direction, data: bytes, timestamp: float | None = None
             ) -> list[CAEvent]:
        """Bytes of a TCP circuit, in order; returns the messages they complete."""
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

    def datagram(self, direction: Direction, data: bytes, timestamp: float | None = None,
                 sender: tuple[str, int] | None = None) -> list[CAEvent]:
        """One UDP payload (a datagram holds whole messages, often several)."""
        state = _Direction(buffer=bytearray(data))
        events = self._drain(direction, state, timestamp, sender=sender or ("0.0.0.0", 0))
        if state.buffer and not state.stopped:
            events.append(self._error(direction, None, {"bytes": len(state.buffer)},
                                      len(state.buffer), "datagram ends inside a message",
                                      timestamp, bytes(state.buffer)))
        return events

    def gap(self, direction: Direction, size: int, timestamp: float | None = None
            ) -> list[CAEvent]:
        """Bytes lost for good. Inside an oversized message being skipped anyway, nothing
        else is lost; otherwise the message in progress is dropped and the direction looks
        for the next message boundary (``_resync``)."""
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

    def _resync(self, direction: Direction, state: _Direction, data: bytes,
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
    def _whole_messages(direction: Direction, data: bytes) -> bool:
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

    def _drain(self, direction: Direction, state: _Direction, timestamp: float | None,
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

    def _parse(self, direction: Direction, message: bytearray, header: Any,
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
                        command = self._read_one(message, sender, try_role)
                else:
                    command = self._read_one(message, sender, try_role)
                break
            except Exception as exc:  # caproto raises many kinds on malformed input
                problem = f"{type(exc).__name__}: {exc}"
        if command is None:
            return self._error(direction, header.command, _header_dict(header), len(message),
                               problem or "undecodable", timestamp, bytes(message))
        name = type(command).__name__
        if (name == "EventAddResponse" and header.payload_size == 0
                and header.parameter2 in self._cancelling):
            # The wire has no cancel acknowledgement of its own: an empty EventAddResponse
            # for a subscription being cancelled is one (caproto's circuit does the same).
            command = caproto.EventCancelResponse.from_components(header)
            name = "EventCancelResponse"
        try:
            fields = self._fields(command, name)
        except Exception as exc:
            return self._error(direction, header.command, _header_dict(header), len(message),
                               f"{name}: {type(exc).__name__}: {exc}", timestamp,
                               bytes(message))
        self.messages += 1
        event = CAEvent(direction, name, header.command, fields, len(message),
                        timestamp=timestamp)
        self._track(event)
        return event

    @staticmethod
    def _read_one(message: bytearray, sender: tuple[str, int] | None, role: Any) -> Any:
        if sender is not None:
            (command,) = read_datagram(message, sender, role)
        else:
            _, command, _ = read_from_bytestream(message, role)
        return command

    def _fields(self, command: Any, name: str) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for param in _params(type(command)):
            if param == "data":
                fields.update(self._data(command))
            elif param == "metadata":
                fields["metadata"] = self._metadata(command) if self.include_metadata else None
            elif param == "original_request":
                original = command.original_request
                request = _header_dict(original)
                cls = Commands[CLIENT].get(original.command)
                request["name"] = cls.__name__ if cls else None
                fields[param] = request
            else:
                try:
                    value = getattr(command, param)
                except Exception:  # e.g. a status code caproto does not know
                    fields.setdefault("unreadable", []).append(param)
                    value = None
                fields[param] = jsonable(value, self.max_data_items)
        if name == "EventCancelResponse" and "sid" in fields:
            fields["sid"] = self._cancelling.get(fields.get("subscriptionid"), fields["sid"])
        return fields

    def _data(self, command: Any) -> dict[str, Any]:
        """The data array, decoded by caproto but never more than ``max_data_items``.

        The count comes from the header and may lie; asking caproto for more strings than
        the payload holds would loop for each one, so the count is clamped first."""
        header = command.header
        if len(command.buffers) < 2:
            return {"data": None}
        raw = command.buffers[1]
        native = native_type(ChannelType(header.data_type))
        item_size = (MAX_STRING_SIZE if native is ChannelType.STRING
                     else ctypes.sizeof(DBR_TYPES[native]))
        available = len(raw) // item_size
        total = min(header.data_count, available)
        shown = min(total, self.max_data_items)
        data = extract_data(memoryview(raw)[:shown * item_size], header.data_type, shown)
        out: dict[str, Any] = {"data": jsonable(data, self.max_data_items)}
        if total > shown or header.data_count > available:
            out["data_items"] = total
            out["data_truncated"] = True
        return out

    def _metadata(self, command: Any) -> Any:
        if not command.buffers:
            return None
        raw = command.buffers[0]
        if isinstance(raw, (bytes, bytearray, memoryview)) and not len(raw):
            return None
        return jsonable(extract_metadata(raw, command.header.data_type), self.max_data_items)

    # -- per-circuit name maps ------------------------------------------------------

    def _remember(self, table: OrderedDict, key: Any, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.max_names:
            table.popitem(last=False)

    def _track(self, event: CAEvent) -> None:
        f = event.fields
        name = event.command
        ts = event.timestamp
        pv: str | None = None
        if name == "CreateChanRequest":
            pv = f.get("name")
            self._remember(self.cids, f.get("cid"), pv)
        elif name == "CreateChanResponse":
            pv = self.cids.get(f.get("cid"))
            self._remember(self.sids, f.get("sid"), pv)
        elif name in ("AccessRightsResponse", "ServerDisconnResponse"):
            pv = self.cids.get(f.get("cid"))
        elif name == "CreateChFailResponse":
            pv = self.cids.pop(f.get("cid"), None)
        elif name == "ClearChannelRequest":
            pv = self.sids.get(f.get("sid")) or self.cids.get(f.get("cid"))
        elif name == "ClearChannelResponse":
            pv = self.sids.pop(f.get("sid"), None) or self.cids.get(f.get("cid"))
            self.cids.pop(f.get("cid"), None)
        elif name in _IOID_REQUESTS:
            pv = self.sids.get(f.get("sid"))
            self._remember(self.ioids, f.get("ioid"), (pv, ts, name))
        elif name in ("WriteRequest", "EventCancelRequest"):
            pv = self.sids.get(f.get("sid"))
            if name == "EventCancelRequest":
                self._remember(self._cancelling, f.get("subscriptionid"), f.get("sid"))
        elif name in _IOID_RESPONSES:
            pv, sent, _ = self.ioids.pop(f.get("ioid"), (None, None, ""))
            if sent is not None and ts is not None:
                event.latency = ts - sent
        elif name == "EventAddRequest":
            pv = self.sids.get(f.get("sid"))
            self._remember(self.subscriptions, f.get("subscriptionid"), pv)
        elif name in ("EventAddResponse", "EventCancelResponse"):
            sub = f.get("subscriptionid")
            pv = self.subscriptions.get(sub)
            if name == "EventCancelResponse":
                self.subscriptions.pop(sub, None)
                self._cancelling.pop(sub, None)
        elif name == "SearchRequest":
            pv = f.get("name")
            self._remember(self.searches, f.get("cid"), (pv, ts))
        elif name in ("SearchResponse", "NotFoundResponse"):
            pv, sent = self.searches.get(f.get("cid"), (None, None))
            if sent is not None and ts is not None:
                event.latency = ts - sent
        elif name == "ErrorResponse":
            original = f.get("original_request") or {}
            if original.get("name") in _IOID_REQUESTS:
                pv, _, _ = self.ioids.pop(original.get("parameter2"), (None, None, ""))
            pv = pv or self.cids.get(f.get("cid"))
        event.pv = pv

    # -- errors ---------------------------------------------------------------------

    def _error(self, direction: Direction, command_id: int | None, fields: dict[str, Any],
               size: int, reason: str, timestamp: float | None,
               raw: bytes = b"") -> CAEvent:
        self.errors += 1
        if raw:
            fields = {**fields, "hex": raw[:ERROR_HEX_BYTES].hex()}
        return CAEvent(direction, "error", command_id, fields, size, error=reason,
                       timestamp=timestamp)

    def _oversized(self, direction: Direction, header: Any, total: int,
                   timestamp: float | None) -> CAEvent:
        cls = Commands[_ROLE[direction]].get(header.command)
        fields = _header_dict(header)
        fields["name"] = cls.__name__ if cls else None
        return self._error(direction, header.command, fields, total,
                           f"message of {header.payload_size} payload bytes is over the "
                           f"{self.max_message_bytes}-byte limit; skipped", timestamp)

    def _stop(self, direction: Direction, state: _Direction, reason: str,
              timestamp: float | None) -> CAEvent:
        state.stopped = reason
        state.ignored += len(state.buffer) + state.skip
        state.buffer = bytearray()
        state.skip = 0
        log.info("channel access: stopped decoding %s: %s", direction, reason)
        return self._error(direction, None, {}, 0, f"decoding stopped: {reason}", timestamp)

    def stopped(self, direction: Direction) -> str | None:
        return self._dirs[direction].stopped


def _header_dict(header: Any) -> dict[str, Any]:
    return {name: int(getattr(header, name)) for name, *_ in type(header)._fields_}


# -- presentation ---------------------------------------------------------------------


def _summary_value(key: str, value: Any) -> str:
    if key in ("data_type", "status", "access_rights") and isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) > SUMMARY_ITEMS:
        shown = ", ".join(repr(v) for v in value[:SUMMARY_ITEMS])
        return f"[{shown}, ...]"
    return repr(value)


def describe_event(event: CAEvent) -> str:
    """caproto-shark style: ``SearchRequest(name='rpi:color', cid=1, version=13, reply=5)``."""
    if event.error is not None:
        text = f"error: {event.error}"
    elif event.command == "resynced":
        f = event.fields
        text = (f"RESYNCED at a message boundary after {f['missing']} missing bytes"
                + (f" ({f['skipped']} more skipped)" if f["skipped"] else ""))
    elif event.command == "joined":
        skipped = event.fields["skipped"]
        text = ("JOINED mid-stream at a message boundary (circuit opened before the capture"
                + (f"; {skipped} bytes skipped)" if skipped else ")"))
    else:
        args = ", ".join(f"{k}={_summary_value(k, v)}" for k, v in event.fields.items()
                         if k != "metadata" and k != "data_truncated")
        text = f"{event.command}({args})"
    if event.pv and event.fields.get("name") != event.pv:
        text += f" pv={event.pv}"
    if event.latency is not None:
        text += f" in {event.latency * 1000:.3f} ms"
    if len(text) > MAX_SUMMARY_CHARS:
        text = text[:MAX_SUMMARY_CHARS - 3] + "..."
    return text


def looks_like_version_header(data: bytes) -> bool:
    """True for a CA VersionRequest/VersionResponse header (how every circuit starts)."""
    if len(data) < HEADER_SIZE:
        return False
    # parameter1/2 vary (caproto's server puts 1 in parameter1; UDP uses a sequence
    # number), so only the command, the empty payload and sane priority/version count.
    command, payload, priority, version = struct.unpack_from(">HHHH", data)
    return command == 0 and payload == 0 and priority <= 99 and 4 <= version <= 64


# -- the chef -------------------------------------------------------------------------


class ChannelAccessChef(FlowChef):
    """One dumpling per EPICS Channel Access command, UDP searches and TCP circuits.

    Bytes lost from a circuit (a gap in the capture) give an ``error`` dumpling, then a
    ``resynced`` one when decoding resumes at the next captured segment of whole messages;
    the circuit's channel and subscription history is kept, so later messages still name
    their PVs. A circuit that was already open when the capture began (CA circuits live
    for days) starts the same way, at its first segment of whole messages, with a
    ``joined`` dumpling; PVs set up before the capture are not known by name.
    """

    transports: ClassVar[frozenset[str]] = frozenset({"tcp", "udp"})
    default_ports: ClassVar[tuple[int, ...]] = (5064, 5065)

    class Options(FlowChefOptions):
        #: Messages with a bigger payload are reported by header and skipped.
        max_message_bytes: int = 1 << 20
        #: Data array items shown per message (the true count is given when cut).
        max_data_items: int = 64
        #: Channel/ioid/subscription ids remembered per circuit.
        max_names: int = 4096
        #: Include DBR metadata (alarm status, timestamp, units, limits).
        include_metadata: bool = True
        #: PV names listed in the interval summary.
        max_pvs_listed: int = 200

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        self._circuits: dict[int, ChannelAccessDecoder] = {}
        #: (client endpoint, cid) -> (pv, time): searches, across UDP flows
        self._searches: OrderedDict[tuple[str, int], tuple[str, float | None]] = OrderedDict()
        self._pvs: OrderedDict[str, int] = OrderedDict()
        self._search_counts: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        #: Set on the instance that reports for several workers (``merge_worker_states``).
        self._merged_monitors: list[dict[str, Any]] | None = None
        self._merged_circuits: int | None = None

    def detect(self, flow: Any, direction: Direction, data: bytes) -> bool:
        # caproto servers may take any TCP port; every circuit opens with a version header.
        return looks_like_version_header(data)

    def new_flow_state(self, flow: Any) -> ChannelAccessDecoder:
        o = self.options
        decoder = ChannelAccessDecoder(max_message_bytes=o.max_message_bytes,
                                       max_data_items=o.max_data_items,
                                       max_names=o.max_names,
                                       include_metadata=o.include_metadata,
                                       midstream=flow.transport == "tcp"
                                       and not getattr(flow, "roles_known", True))
        if flow.transport == "tcp":
            self._circuits[flow.id] = decoder
        return decoder

    def on_data(self, flow: Any, direction: Direction, data: bytes, timestamp: float
                ) -> Iterator[dict[str, Any]]:
        decoder: ChannelAccessDecoder = self.flow_state(flow)
        if flow.transport == "udp":
            sender = flow.client if direction is Direction.CLIENT_TO_SERVER else flow.server
            events = decoder.datagram(direction, data, timestamp, sender=sender)
        else:
            events = decoder.feed(direction, data, timestamp)
        for event in events:
            yield self._payload(flow, event)

    def on_gap(self, flow: Any, direction: Direction, size: int) -> Iterator[dict[str, Any]]:
        for event in self.flow_state(flow).gap(direction, size, self.now):
            yield self._payload(flow, event)

    def on_close(self, flow: Any, reason: CloseReason) -> Iterator[dict[str, Any]]:
        decoder = self._circuits.pop(flow.id, None)
        if decoder is None:
            return
        for event in decoder.close(self.now):
            yield self._payload(flow, event)

    # -- several workers (nd-sniff --workers N) --------------------------------------
    # Each worker decodes its flows; a UDP search and its reply (which comes on another
    # flow when the search was broadcast) share the client's endpoint, which is what the
    # reader shards UDP by, so they meet in one worker. The interval statistics add the
    # workers' counts; PVs seen are ordered by when each worker last saw them.
    shard = "merge"

    def worker_state(self) -> dict[str, Any]:
        return {"pvs": list(self._pvs.items()), "counts": dict(self.counts),
                "search_counts": dict(self._search_counts),
                "circuits": len(self._circuits), "monitors": self._monitors()}

    def merge_worker_states(self, states: list[dict[str, Any]]) -> None:
        pvs: OrderedDict[str, int] = OrderedDict()
        counts: Counter[str] = Counter()
        searches: Counter[str] = Counter()
        monitors: list[dict[str, Any]] = []
        circuits = 0
        for state in states:
            for pv, n in state["pvs"]:
                pvs[pv] = pvs.pop(pv, 0) + n
            counts.update(state["counts"])
            searches.update(state["search_counts"])
            monitors.extend(state["monitors"])
            circuits += state["circuits"]
        while len(pvs) > 10_000:
            pvs.popitem(last=False)
        self._pvs, self.counts, self._search_counts = pvs, counts, searches
        self._merged_monitors, self._merged_circuits = monitors, circuits

    # -- payloads -------------------------------------------------------------------

    def _payload(self, flow: Any, event: CAEvent) -> dict[str, Any]:
        direction = event.direction
        src, dst = flow.src(direction), flow.dst(direction)
        self.counts[event.command] += 1
        payload: dict[str, Any] = {
            "flow": flow.describe(),
            "src": src,
            "dst": dst,
            "direction": str(direction),
            "timestamp": event.timestamp,
            "transport": flow.transport,
            "command": event.command,
            "command_id": event.command_id,
            "fields": event.fields,
            "pv": event.pv,
        }
        if event.error is not None:
            payload["error"] = event.error
            self.logger.debug("%s %s: %s", flow, direction, event.error)
        if flow.transport == "udp":
            self._udp_search(event, src, dst, payload)
        if event.latency is not None:
            payload["latency"] = event.latency
        if event.pv:
            self._pvs[event.pv] = self._pvs.pop(event.pv, 0) + 1
            while len(self._pvs) > 10_000:
                self._pvs.popitem(last=False)
        payload["summary"] = f"{src} -> {dst}  {describe_event(event)}"
        return payload

    def _udp_search(self, event: CAEvent, src: str, dst: str, payload: dict[str, Any]
                    ) -> None:
        """Name search replies: the reply comes on another flow when the search was
        broadcast, so the request is remembered by client endpoint and cid."""
        f = event.fields
        if event.command == "SearchRequest":
            self._searches[(src, f.get("cid"))] = (f.get("name"), event.timestamp)
            self._searches.move_to_end((src, f.get("cid")))
            while len(self._searches) > 10_000:
                self._searches.popitem(last=False)
            self._search_counts[f.get("name")] += 1
            if len(self._search_counts) > 10_000:
                self._search_counts = Counter(dict(self._search_counts.most_common(5_000)))
        elif event.command in ("SearchResponse", "NotFoundResponse"):
            found = self._searches.get((dst, f.get("cid")))
            if found is not None:
                event.pv = event.pv or found[0]
                payload["pv"] = event.pv
                if event.latency is None and found[1] is not None and event.timestamp:
                    event.latency = event.timestamp - found[1]
            if event.command == "SearchResponse":
                ip = f.get("ip")
                sender_ip = src.rsplit(":", 1)[0].strip("[]")
                host = sender_ip if ip in ANY_ADDRESS else ip
                payload["server_address"] = f"{host}:{f.get('port')}"

    def _monitors(self) -> list[dict[str, Any]]:
        if self._merged_monitors is not None:
            return self._merged_monitors
        return [
            {"circuit": flow_id, "subscriptionid": sub, "pv": pv}
            for flow_id, decoder in self._circuits.items()
            for sub, pv in decoder.subscriptions.items()
        ]

    def interval_handler(self, interval: float | None = None) -> dict[str, Any]:
        monitors = self._monitors()
        pvs = list(self._pvs)
        searches = self.counts["SearchRequest"]
        errors = self.counts["error"]
        circuits = (len(self._circuits) if self._merged_circuits is None
                    else self._merged_circuits)
        return {
            "kind": "stats",
            "summary": (f"channel access: {len(pvs)} PVs seen, {searches} searches, "
                        f"{circuits} circuits open, {len(monitors)} monitors "
                        f"active, {errors} errors"),
            "pvs_seen": pvs[-self.options.max_pvs_listed:],
            "pv_count": len(pvs),
            "search_requests": searches,
            "search_responses": self.counts["SearchResponse"],
            "searches_by_pv": dict(self._search_counts.most_common(self.options.max_pvs_listed)),
            "circuits_open": circuits,
            "monitors_active": len(monitors),
            "monitors": monitors[:self.options.max_pvs_listed],
            "commands": dict(self.counts),
            "errors": errors,
        }
