"""DNS lookups: which names were asked for, what came back, and how long it took.

``DnsDecoder`` is the sans-I/O part: fed one DNS message (a UDP payload) at a time, it
parses it with dnslib and pairs each response with the query it answers (same message id
within one flow), so the chef only has to turn the resulting ``Lookup`` events into
dumplings. ``DNSLookupChef`` is the thin shell: one decoder per UDP flow, plus the
netdumplings 0.5 interval summary ``{"lookups_seen": {hostname: {"count", "latest"}}}``.
"""

from __future__ import annotations

import logging
import re
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import dnslib
from dnslib.bimap import BimapError
from dnslib.buffer import BufferError as DnsBufferError
from dnslib.label import DNSBuffer

from netdumplings.chef import CloseReason, Direction, FlowChef, FlowChefOptions

log = logging.getLogger(__name__)

#: A DNS message never exceeds this (UDP payload limit, and TCP's 2-byte length).
MAX_MESSAGE = 65535
#: Records shown per section; the true count is given next to them.
MAX_RECORDS = 50
#: Characters of one record's data shown (long TXT or DNSKEY data gets cut).
MAX_DATA_CHARS = 256
#: Bytes of an undecodable message shown as hex in an error event.
ERROR_HEX_BYTES = 64


#: A TXT string's bytes shown as they are (printable ASCII but the quote and backslash).
_TXT_SAFE = re.compile(rb'[\x20\x21\x23-\x5b\x5d-\x7e]*\Z')


def _txt_string(chunk: bytes) -> str:
    if _TXT_SAFE.match(chunk):
        return '"' + chunk.decode("ascii") + '"'
    out = []
    for c in chunk:
        if c == 0x22 or c == 0x5C:
            out.append("\\" + chr(c))
        elif 0x20 <= c <= 0x7E:
            out.append(chr(c))
        else:
            out.append("\\%03d" % c)
    return '"' + "".join(out) + '"'


def txt_presentation(strings: list[bytes]) -> str:
    """TXT rdata as a zone file (RFC 1035 5.1) and ``dig`` write it: each character-string
    in double quotes, separated by a space; ``"`` and ``\\`` escaped with a backslash and
    every byte outside printable ASCII as ``\\DDD`` (decimal). Readers of DNS tools know
    this form, and unlike dnslib's (comma-separated, octal escapes, raw UTF-8) it keeps
    every byte and the string boundaries unambiguous: ``"a,b"`` is one string, ``"a" "b"``
    two."""
    return " ".join([_txt_string(chunk) for chunk in strings])


# -- events ---------------------------------------------------------------------------


@dataclass(slots=True)
class DnsMessage:
    """One parsed DNS message, already in JSON-able form."""

    id: int
    is_response: bool
    header: dict[str, Any]
    questions: list[dict[str, Any]]
    answers: list[dict[str, Any]]
    authority: list[dict[str, Any]]
    additional: list[dict[str, Any]]
    edns: dict[str, Any] | None
    size: int
    counts: dict[str, int]

    @property
    def question(self) -> dict[str, Any] | None:
        return self.questions[0] if self.questions else None


@dataclass(slots=True)
class Query:
    """A query was seen (its answer, if any, comes later as a ``Lookup``)."""

    message: DnsMessage
    direction: Any
    timestamp: float | None
    retransmission: bool = False


@dataclass(slots=True)
class Lookup:
    """A query and its response; ``response`` is None for an unanswered query and
    ``query`` is None for a response whose query was not seen."""

    query: DnsMessage | None
    response: DnsMessage | None
    query_direction: Any
    query_time: float | None
    response_time: float | None

    @property
    def latency(self) -> float | None:
        if self.query is None or self.response is None:
            return None
        if self.query_time is None or self.response_time is None:
            return None
        return max(0.0, self.response_time - self.query_time)


@dataclass(slots=True)
class DecodeError:
    """Bytes that are not a DNS message (skipped; the flow's decoder carries on)."""

    reason: str
    size: int
    hex_prefix: str
    direction: Any
    timestamp: float | None


Event = Query | Lookup | DecodeError


# -- decoder ---------------------------------------------------------------------------


def _name(label: Any) -> str:
    return str(label)


def _type_name(code: int) -> str:
    return str(dnslib.QTYPE.get(code, f"TYPE{code}"))


def _class_name(code: int) -> str:
    return str(dnslib.CLASS.get(code, f"CLASS{code}"))


#: Extended response codes (RFC 6891 and later) that dnslib's RCODE table lacks.
EXTENDED_RCODES = {16: "BADVERS", 17: "BADKEY", 18: "BADTIME", 19: "BADMODE",
                   20: "BADNAME", 21: "BADALG", 22: "BADTRUNC", 23: "BADCOOKIE"}


def _rcode_name(code: int) -> str:
    if code in EXTENDED_RCODES:
        return EXTENDED_RCODES[code]
    return str(dnslib.RCODE.get(code, f"RCODE{code}"))


def _rdata_text(rr: Any) -> str:
    try:
        if rr.rtype == 16 and isinstance(getattr(rr.rdata, "data", None), list):
            text = txt_presentation(rr.rdata.data)
        else:
            text = str(rr.rdata)
    except Exception:  # dnslib's formatting of odd rdata; never let it escape
        text = "<unprintable>"
    if len(text) > MAX_DATA_CHARS:
        text = text[:MAX_DATA_CHARS] + f"...({len(text)} chars)"
    return text


def _record(rr: Any) -> dict[str, Any]:
    return {
        "name": _name(rr.rname),
        "type": _type_name(rr.rtype),
        "class": _class_name(rr.rclass),
        "ttl": rr.ttl,
        "data": _rdata_text(rr),
    }


def _edns(rr: Any) -> dict[str, Any]:
    options = []
    for opt in list(rr.rdata or [])[:MAX_RECORDS]:
        data = bytes(getattr(opt, "data", b"") or b"")
        options.append({"code": getattr(opt, "code", None), "data_hex": data[:256].hex()})
    return {
        "udp_payload_size": rr.rclass,
        "extended_rcode_and_flags": rr.ttl,
        "do": bool(rr.ttl & 0x8000),
        "options": options,
    }


def _section(rrs: list[Any]) -> list[dict[str, Any]]:
    return [_record(rr) for rr in rrs[:MAX_RECORDS]]


#: Name-decompression work dnslib may do per byte of a message (a label or a pointer hop
#: counts one). Real messages need a few per byte; see ``_BoundedBuffer``.
NAME_WORK_PER_BYTE = 16


class _BoundedBuffer(DNSBuffer):
    """dnslib's parse buffer with a cap on the work spent decompressing names.

    dnslib follows each compression pointer by recursion and copies the labels of every
    level, and it never remembers a name it has already decoded. A 64 KB datagram that
    builds a backward pointer chain a few hundred hops deep and then points thousands of
    questions at its end costs O(questions x depth^2): seconds to minutes of CPU for one
    packet (the fast path declines such chains, so they reach dnslib). Past the budget the
    message is refused as malformed (a DecodeError), which bounds every message. (The fast
    path remembers the names it decoded, so it may still answer such a message cheaply.)"""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.name_work = NAME_WORK_PER_BYTE * len(data) + 1024

    def decode_name(self, last: int = -1) -> Any:
        name = super().decode_name(last)   # recurses through this method for each hop
        self.name_work -= 1 + len(name.label)
        if self.name_work < 0:
            raise DnsBufferError("name compression pointers need too much work to follow")
        return name


def _dnslib_record(data: bytes) -> Any:
    """``dnslib.DNSRecord.parse(data)``, section by section over a ``_BoundedBuffer``."""
    buf = _BoundedBuffer(data)
    try:
        header = dnslib.DNSHeader.parse(buf)
        questions = [dnslib.DNSQuestion.parse(buf) for _ in range(header.q)]
        sections = [[dnslib.RR.parse(buf) for _ in range(count)]
                    for count in (header.a, header.auth, header.ar)]
    except dnslib.DNSError:
        raise
    except (DnsBufferError, BimapError) as exc:   # worded as dnslib.DNSRecord.parse does
        raise dnslib.DNSError(f"Error unpacking DNSRecord [offset={buf.offset}]: {exc}")
    return dnslib.DNSRecord(header, questions, sections[0], auth=sections[1], ar=sections[2])


def parse_message_dnslib(data: bytes) -> DnsMessage:
    """The reference decoder: dnslib parses everything (raises on anything malformed).

    It is what the output is defined by; ``fast_parse`` must agree with it wherever it
    answers at all."""
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"{len(data)} bytes is longer than any DNS message")
    rec = _dnslib_record(data)
    h = rec.header
    edns = None
    additional = []
    for rr in rec.ar:
        if rr.rtype == dnslib.QTYPE.OPT and edns is None:
            edns = _edns(rr)
        else:
            additional.append(rr)
    rcode = h.rcode
    if edns is not None:  # EDNS carries the upper 8 bits of a 12-bit rcode
        rcode |= (edns["extended_rcode_and_flags"] >> 24) << 4
    header = {
        "id": h.id,
        "qr": bool(h.qr),
        "opcode": h.opcode,
        "aa": bool(h.aa),
        "tc": bool(h.tc),
        "rd": bool(h.rd),
        "ra": bool(h.ra),
        "ad": bool(h.ad),
        "cd": bool(h.cd),
        "rcode": _rcode_name(rcode),
    }
    questions = [{"name": _name(q.qname), "type": _type_name(q.qtype),
                  "class": _class_name(q.qclass)} for q in rec.questions[:MAX_RECORDS]]
    return DnsMessage(
        id=h.id, is_response=bool(h.qr), header=header, questions=questions,
        answers=_section(rec.rr), authority=_section(rec.auth),
        additional=_section(additional), edns=edns, size=len(data),
        counts={"questions": len(rec.questions), "answers": len(rec.rr),
                "authority": len(rec.auth), "additional": len(additional)},
    )


# -- fast path --------------------------------------------------------------------------
#
# dnslib builds an object per label, record and rdata and formats them through several
# layers; for the few record types that make up nearly all real traffic the same text can
# be produced straight from the bytes. The fast path below answers only when it is sure
# dnslib would parse the message the same way; anything it is unsure of (other types, odd
# compression, lengths that do not add up, non-ASCII labels dnslib might reject) makes it
# give up, and dnslib decides - so the output, errors included, is dnslib's by definition.
# tests/test_dns.py checks the two agree field by field on real and generated messages.


class _Decline(Exception):
    """The fast path is not sure: let dnslib parse the message."""


_HEADER = struct.Struct("!HHHHHH")
_QTAIL = struct.Struct("!HH")
_RRHEAD = struct.Struct("!HHIH")
_SOATIMES = struct.Struct("!IIIII")
_U16 = struct.Struct("!H")
_AAAA = struct.Struct("!8H")

#: Pointer hops followed in one name. dnslib follows pointers by recursion, so a long
#: enough chain makes it fail where a loop would not: past this, dnslib decides.
MAX_POINTER_HOPS = 32

#: Bytes that dnslib shows as they are in a label (anything else becomes ``\\ddd``).
_LABEL_PLAIN = re.compile(rb"[\x21-\x7e]*\Z")

_type_names: dict[int, str] = {}
_class_names: dict[int, str] = {}
_rcode_names: dict[int, str] = {}


def _cached(cache: dict[int, str], fn: Any, code: int) -> str:
    name = cache.get(code)
    if name is None:
        name = cache[code] = fn(code)   # at most 65536 codes: bounded
    return name


def _label_text(label: bytes) -> str:
    if _LABEL_PLAIN.match(label):
        return label.decode("ascii")
    label.decode("utf-8")   # dnslib refuses labels that are not UTF-8: UnicodeError declines
    return "".join(chr(c) if 33 <= c <= 126 else "\\%03d" % c for c in label)


def _name_at(data: bytes, pos: int, size: int,
             seen: dict[int, tuple[str, int]]) -> tuple[str, int]:
    """(name as dnslib prints it, offset after the name in place).

    A compression pointer must point before the first label of the run it ends, so every
    hop goes strictly backwards: that bounds the walk without a visited set, and it is a
    subset of what dnslib accepts (it only requires the pointer to point backwards).
    ``seen`` maps the offsets where names of this message started to (text, hops): a
    pointer to one of them (the usual ``0xc00c``) needs no second walk, and the walk
    from there was held to the same rule, as that offset starts its run."""
    start = pos
    labels: list[bytes] = []
    end = -1
    run_start = pos
    hops = 0
    suffix = None
    while True:
        if pos >= size:
            raise _Decline
        length = data[pos]
        if length == 0:
            if end < 0:
                end = pos + 1
            break
        if length >= 0xC0:
            if pos + 1 >= size:
                raise _Decline
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= run_start or hops >= MAX_POINTER_HOPS:
                raise _Decline
            hops += 1
            if end < 0:
                end = pos + 2
            known = seen.get(target)
            if known is not None:
                suffix, more = known
                hops += more
                if hops > MAX_POINTER_HOPS:
                    raise _Decline
                break
            pos = run_start = target
            continue
        if length > 63:   # 0x40/0x80 label types: dnslib reads them as lengths; not us
            raise _Decline
        nxt = pos + 1 + length
        if nxt > size:
            raise _Decline
        labels.append(data[pos + 1:nxt])
        pos = nxt
    if labels:
        raw = b".".join(labels)
        if _LABEL_PLAIN.match(raw):   # "." is plain too: dnslib prints a dot in a label as is
            text = raw.decode("ascii")
        else:
            text = ".".join([_label_text(label) for label in labels])
        if suffix is None or suffix == ".":
            text += "."
        else:
            text += "." + suffix
    else:
        text = suffix if suffix is not None else "."
    seen[start] = (text, hops)
    return text, end


def _ipv6_text(raw: bytes) -> str:
    # dnslib's own rendering, not RFC 5952: the *first* run of two or more zero groups
    # becomes "::" (not the longest), groups in lower-case hex without leading zeros
    g = _AAAA.unpack(raw)
    for i in range(7):
        if g[i] == 0 and g[i + 1] == 0:
            j = i + 2
            while j < 8 and g[j] == 0:
                j += 1
            return (":".join("%x" % x for x in g[:i]) + "::"
                    + ":".join("%x" % x for x in g[j:]))
    return ":".join("%x" % x for x in g)


def _txt_text(data: bytes, pos: int, end: int, rdlength: int) -> str:
    parts = []
    total = 0
    while pos < end:
        n = data[pos]
        pos += 1
        if total + n >= rdlength:   # dnslib's own bound (string bytes < rdlength)
            raise _Decline
        total += n
        parts.append(data[pos:pos + n])
        pos += n
    if pos != end:
        raise _Decline
    return txt_presentation(parts)


def _rdata(data: bytes, rtype: int, pos: int, end: int, rdlength: int, size: int,
           seen: dict[int, tuple[str, int]]) -> str:
    if rtype == 1:
        if rdlength != 4:
            raise _Decline
        return "%d.%d.%d.%d" % (data[pos], data[pos + 1], data[pos + 2], data[pos + 3])
    if rtype == 28:
        if rdlength != 16:
            raise _Decline
        return _ipv6_text(data[pos:end])
    if rtype == 5 or rtype == 2 or rtype == 12:   # CNAME, NS, PTR
        text, after = _name_at(data, pos, size, seen)
    elif rtype == 15:   # MX
        if rdlength < 3:
            raise _Decline
        text, after = _name_at(data, pos + 2, size, seen)
        text = "%d %s" % (_U16.unpack_from(data, pos)[0], text)
    elif rtype == 6:   # SOA
        mname, after = _name_at(data, pos, size, seen)
        rname, after = _name_at(data, after, size, seen)
        if after + 20 != end:
            raise _Decline
        times = _SOATIMES.unpack_from(data, after)
        return "%s %s %d %d %d %d %d" % (mname, rname, *times)
    elif rtype == 16:
        return _txt_text(data, pos, end, rdlength)
    else:
        raise _Decline
    if after != end:   # dnslib would go on reading from where the name ended
        raise _Decline
    return text


def _edns_fast(data: bytes, pos: int, end: int, rclass: int, ttl: int) -> dict[str, Any]:
    options = []
    while end - pos > 4:   # dnslib ignores a tail of 4 bytes or fewer
        code, length = _QTAIL.unpack_from(data, pos)
        pos += 4
        if pos + length > end:
            raise _Decline
        if len(options) < MAX_RECORDS:
            options.append({"code": code, "data_hex": data[pos:pos + min(length, 256)].hex()})
        pos += length
    return {"udp_payload_size": rclass, "extended_rcode_and_flags": ttl,
            "do": bool(ttl & 0x8000), "options": options}


def fast_parse(data: bytes) -> DnsMessage | None:
    """``parse_message_dnslib(data)`` for the common record types, or None when unsure."""
    try:
        return _fast_parse(data)
    except _Decline:
        return None
    except (IndexError, struct.error, UnicodeError):   # cut short or odd: dnslib decides
        return None


def _fast_parse(data: bytes) -> DnsMessage:
    size = len(data)
    if size < 12:
        raise _Decline
    qid, bits, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data, 0)
    pos = 12
    seen: dict[int, tuple[str, int]] = {}
    questions = []
    for i in range(qdcount):
        name, pos = _name_at(data, pos, size, seen)
        if pos + 4 > size:
            raise _Decline
        qtype, qclass = _QTAIL.unpack_from(data, pos)
        pos += 4
        if i < MAX_RECORDS:
            questions.append({"name": name,
                              "type": _type_names.get(qtype) or _cached(_type_names, _type_name, qtype),
                              "class": _class_names.get(qclass) or _cached(_class_names, _class_name, qclass)})
    sections: list[list[dict[str, Any]]] = [[], [], []]
    edns = None
    n_additional = 0
    for sec, count in ((0, ancount), (1, nscount), (2, arcount)):
        out = sections[sec]
        for _ in range(count):
            name, pos = _name_at(data, pos, size, seen)
            if pos + 10 > size:
                raise _Decline
            rtype, rclass, ttl, rdlength = _RRHEAD.unpack_from(data, pos)
            pos += 10
            end = pos + rdlength
            if end > size:
                raise _Decline
            if rtype == 41:
                # only the first OPT of the additional section is EDNS; any other OPT
                # dnslib renders as a list of option objects: left to it
                if sec != 2 or edns is not None:
                    raise _Decline
                edns = _edns_fast(data, pos, end, rclass, ttl)
                pos = end
                continue
            if rdlength == 0:   # dnslib: "Empty RR"
                raise _Decline
            text = _rdata(data, rtype, pos, end, rdlength, size, seen)
            pos = end
            if sec == 2:
                n_additional += 1
            if len(out) < MAX_RECORDS:
                if len(text) > MAX_DATA_CHARS:
                    text = text[:MAX_DATA_CHARS] + f"...({len(text)} chars)"
                out.append({"name": name,
                            "type": _type_names.get(rtype) or _cached(_type_names, _type_name, rtype),
                            "class": _class_names.get(rclass) or _cached(_class_names, _class_name, rclass),
                            "ttl": ttl, "data": text})
    rcode = bits & 0xF
    if edns is not None:
        rcode |= (edns["extended_rcode_and_flags"] >> 24) << 4
    qr = bool(bits & 0x8000)
    header = {
        "id": qid, "qr": qr, "opcode": (bits >> 11) & 0xF, "aa": bool(bits & 0x400),
        "tc": bool(bits & 0x200), "rd": bool(bits & 0x100), "ra": bool(bits & 0x80),
        "ad": bool(bits & 0x20), "cd": bool(bits & 0x10),
        "rcode": _cached(_rcode_names, _rcode_name, rcode),
    }
    return DnsMessage(
        id=qid, is_response=qr, header=header, questions=questions,
        answers=sections[0], authority=sections[1], additional=sections[2], edns=edns,
        size=size, counts={"questions": qdcount, "answers": ancount,
                           "authority": nscount, "additional": n_additional},
    )


def parse_message(data: bytes) -> DnsMessage:
    """Parse one DNS message into JSON-able parts (raises on anything malformed)."""
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"{len(data)} bytes is longer than any DNS message")
    msg = fast_parse(data)
    if msg is None:
        msg = parse_message_dnslib(data)
    return msg

class DnsDecoder:
    """Parses the DNS messages of one flow and pairs responses with their queries.

    Sans-I/O: ``feed`` takes a datagram's bytes and returns events; ``expire`` and
    ``close`` report queries that were never answered. Memory is bounded by
    ``max_pending`` outstanding queries (the oldest is reported unanswered when full).
    """

    def __init__(self, query_timeout: float = 5.0, max_pending: int = 256) -> None:
        self.query_timeout = query_timeout
        self.max_pending = max_pending
        # id -> (query message, direction, capture time); insertion order = age
        self._pending: OrderedDict[int, tuple[DnsMessage, Any, float | None]] = OrderedDict()
        self.messages = 0
        self.errors = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def feed(self, data: bytes, direction: Any = None,
             timestamp: float | None = None) -> list[Event]:
        events: list[Event] = []
        if timestamp is not None:
            events.extend(self.expire(timestamp))
        try:
            msg = parse_message(bytes(data))
        except Exception as exc:  # dnslib raises many kinds on garbage; all mean "not DNS"
            self.errors += 1
            events.append(DecodeError(
                reason=f"{type(exc).__name__}: {exc}"[:200], size=len(data),
                hex_prefix=bytes(data[:ERROR_HEX_BYTES]).hex(), direction=direction,
                timestamp=timestamp))
            return events
        self.messages += 1
        if not msg.is_response:
            if msg.id in self._pending:
                events.append(Query(msg, direction, timestamp, retransmission=True))
                return events
            if len(self._pending) >= self.max_pending:
                _, (old, old_dir, old_ts) = self._pending.popitem(last=False)
                events.append(Lookup(old, None, old_dir, old_ts, None))
            self._pending[msg.id] = (msg, direction, timestamp)
            events.append(Query(msg, direction, timestamp))
            return events
        pending = self._pending.pop(msg.id, None)
        if pending is None:
            reply_dir = direction.reverse if isinstance(direction, Direction) else None
            events.append(Lookup(None, msg, reply_dir, None, timestamp))
        else:
            query, q_dir, q_ts = pending
            events.append(Lookup(query, msg, q_dir, q_ts, timestamp))
        return events

    def expire(self, now: float) -> list[Lookup]:
        """Queries older than ``query_timeout`` at capture time ``now``, as unanswered."""
        out = []
        limit = now - self.query_timeout
        while self._pending:
            qid, (msg, q_dir, q_ts) = next(iter(self._pending.items()))
            if q_ts is None or q_ts >= limit:
                break
            del self._pending[qid]
            out.append(Lookup(msg, None, q_dir, q_ts, None))
        return out

    def close(self) -> list[Lookup]:
        """Every outstanding query, as unanswered (the flow is over)."""
        out = [Lookup(msg, None, q_dir, q_ts, None)
               for msg, q_dir, q_ts in self._pending.values()]
        self._pending.clear()
        return out


class DnsTcpFramer:
    """DNS over TCP (RFC 1035 4.2.2, RFC 7766): every message is preceded by its length in
    two bytes. Sans-I/O: ``feed`` returns the whole messages completed by ``data``, so at
    most one message (64 KB) is held per direction. A gap loses the boundaries, and a
    two-byte length cannot be told from any other two bytes, so that direction stops
    (``stopped``; the bytes that follow are counted in ``skipped``)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.stopped = False
        self.skipped = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        if self.stopped:
            self.skipped += len(data)
            return []
        buf = self._buf
        buf += data
        out = []
        pos, n = 0, len(buf)
        while n - pos >= 2:
            size = (buf[pos] << 8) | buf[pos + 1]
            if n - pos - 2 < size:
                break
            out.append(bytes(buf[pos + 2:pos + 2 + size]))
            pos += 2 + size
        del buf[:pos]
        return out

    def gap(self, size: int) -> int:
        """Stop; returns the bytes of a partial message dropped with the gap."""
        dropped = len(self._buf)
        self._buf = bytearray()
        self.skipped += size + dropped
        self.stopped = True
        return dropped


class _TcpFlow:
    """A DNS-over-TCP connection: one decoder (queries pair with responses by id across
    the two directions, pipelined or not) and a framer per direction."""

    __slots__ = ("decoder", "framers")

    def __init__(self, decoder: DnsDecoder) -> None:
        self.decoder = decoder
        self.framers = {Direction.CLIENT_TO_SERVER: DnsTcpFramer(),
                        Direction.SERVER_TO_CLIENT: DnsTcpFramer()}


# -- chef ------------------------------------------------------------------------------


def _question_text(msg: DnsMessage | None) -> str:
    q = msg.question if msg is not None else None
    return f"{q['type']} {q['name']}" if q else "(no question)"


def _answer_text(msg: DnsMessage) -> str:
    if not msg.answers:
        return ""
    shown = ", ".join(a["data"] if a["type"] in ("A", "AAAA") else f"{a['type']} {a['data']}"
                      for a in msg.answers[:4])
    more = len(msg.answers) - 4
    return shown + (f" (+{more} more)" if more > 0 else "")


class DNSLookupChef(FlowChef):
    """DNS lookups per flow: one dumpling per answered (or unanswered) query.

    UDP and TCP (the two-byte length framing of RFC 7766: truncated answers retried over
    TCP, large responses, zone transfers) on the same ports.

    The lookup dumpling carries the question, the response code, the answer, authority
    and additional records, EDNS of both sides and the query-to-response latency. A
    query nobody answers is reported after ``query_timeout`` seconds of capture time
    (checked when the flow sees more traffic) or when its flow ends. Every interval the
    chef sends ``{"lookups_seen": {hostname: {"count": n, "latest": epoch_ms}}}`` like
    netdumplings 0.5 (counting queries, not responses, so a lookup counts once).
    """

    default_ports: ClassVar[tuple[int, ...]] = (53,)
    transports: ClassVar[frozenset[str]] = frozenset({"udp", "tcp"})

    class Options(FlowChefOptions):
        #: Also follow multicast DNS (port 5353).
        mdns: bool = False
        #: Also decode DNS over TCP on the same ports.
        tcp: bool = True
        #: Seconds (capture time) after which an unanswered query is reported.
        query_timeout: float = 5.0
        #: Hostnames kept in ``lookups_seen`` (least recently looked up dropped first).
        max_hostnames: int = 10_000
        #: Outstanding queries kept per flow.
        max_pending: int = 256

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        self.lookups_seen: OrderedDict[str, dict[str, int]] = OrderedDict()
        self.decode_errors = 0

    def _configure(self) -> None:
        super()._configure()
        if self.options.mdns:  # before the kitchen reads ``ports``
            self.ports = self.ports | {5353}
        if not self.options.tcp:  # likewise ``transports``
            self.transports = frozenset({"udp"})

    def new_flow_state(self, flow: Any) -> DnsDecoder | _TcpFlow:
        decoder = DnsDecoder(self.options.query_timeout, self.options.max_pending)
        return _TcpFlow(decoder) if flow.transport == "tcp" else decoder

    def on_data(self, flow: Any, direction: Direction, data: bytes,
                timestamp: float) -> Iterator[dict[str, Any]]:
        state = self.flow_state(flow)
        if type(state) is DnsDecoder:   # UDP: the datagram is the message
            decoder, messages = state, (data,)
        else:
            decoder, messages = state.decoder, state.framers[direction].feed(data)
        for message in messages:
            for event in decoder.feed(message, direction, timestamp):
                payload = self._payload(flow, event)
                if payload is not None:
                    yield payload

    def on_gap(self, flow: Any, direction: Direction, size: int) -> Iterator[dict[str, Any]]:
        state = self.flow_state(flow)
        if not isinstance(state, _TcpFlow) or state.framers[direction].stopped:
            return
        dropped = state.framers[direction].gap(size)
        lost = f" and {dropped} bytes of a message" if dropped else ""
        yield self._payload(flow, DecodeError(
            reason=f"{size} bytes missing from the capture{lost}: DNS over TCP has no way "
                   f"to find the next message, so this direction is no longer decoded",
            size=size, hex_prefix="", direction=direction, timestamp=self.now))

    def on_close(self, flow: Any, reason: CloseReason) -> Iterator[dict[str, Any]]:
        state = flow.state.get(self.name)
        if isinstance(state, _TcpFlow):
            for direction, framer in state.framers.items():
                if framer.buffered and not framer.stopped:
                    yield self._payload(flow, DecodeError(
                        reason=f"connection ended inside a message ({framer.buffered} "
                               f"bytes, length prefix included)",
                        size=framer.buffered, hex_prefix="", direction=direction,
                        timestamp=getattr(flow, "last_seen", None)))
            decoder = state.decoder
        elif isinstance(state, DnsDecoder):
            decoder = state
        else:
            return
        for event in decoder.close():
            payload = self._payload(flow, event)
            if payload is not None:
                payload["closed_by"] = str(reason)
                yield payload

    def interval_handler(self, interval: float | None = None) -> dict[str, Any]:
        return {"lookups_seen": {host: dict(v) for host, v in self.lookups_seen.items()}}

    # Several workers (nd-sniff --workers N): each counts the lookups of its flows; the
    # interval dumpling has, per hostname, the counts added and the latest time, ordered
    # by that time (the least recent dropped first beyond ``max_hostnames``, as here).
    shard = "merge"

    def worker_state(self) -> list[tuple[str, int, int]]:
        return [(host, v["count"], v["latest"]) for host, v in self.lookups_seen.items()]

    def merge_worker_states(self, states: list[list[tuple[str, int, int]]]) -> None:
        merged: dict[str, list[int]] = {}
        for state in states:
            for host, count, latest in state:
                have = merged.get(host)
                if have is None:
                    merged[host] = [count, latest]
                else:
                    have[0] += count
                    have[1] = max(have[1], latest)
        ordered = sorted(merged.items(), key=lambda kv: kv[1][1])
        ordered = ordered[max(0, len(ordered) - self.options.max_hostnames):]
        self.lookups_seen = OrderedDict(
            (host, {"count": c, "latest": t}) for host, (c, t) in ordered)

    # -- events to payloads -------------------------------------------------------------

    def _count(self, msg: DnsMessage, timestamp: float | None) -> None:
        q = msg.question
        if q is None:
            return
        host = q["name"][:-1] if q["name"].endswith(".") and q["name"] != "." else q["name"]
        when = int(round((timestamp or 0.0) * 1000))
        seen = self.lookups_seen.get(host)
        if seen is None:
            if len(self.lookups_seen) >= self.options.max_hostnames:
                self.lookups_seen.popitem(last=False)
            self.lookups_seen[host] = {"count": 1, "latest": when}
        else:
            seen["count"] += 1
            seen["latest"] = when
            self.lookups_seen.move_to_end(host)

    def _payload(self, flow: Any, event: Event) -> dict[str, Any] | None:
        if isinstance(event, Query):
            if not event.retransmission:
                self._count(event.message, event.timestamp)
            return None
        if isinstance(event, DecodeError):
            self.decode_errors += 1
            direction = event.direction or Direction.CLIENT_TO_SERVER
            self.logger.debug("%s: not DNS (%d bytes): %s", flow.label(direction),
                              event.size, event.reason)
            return {
                "event": "error",
                "flow": flow.describe(),
                "src": flow.src(direction), "dst": flow.dst(direction),
                "direction": str(direction),
                "timestamp": event.timestamp,
                "summary": f"{flow.label(direction)}  not DNS ({event.size} bytes): "
                           f"{event.reason}",
                "error": event.reason, "size": event.size, "hex_prefix": event.hex_prefix,
            }
        return self._lookup_payload(flow, event)

    def _lookup_payload(self, flow: Any, ev: Lookup) -> dict[str, Any]:
        direction = ev.query_direction or Direction.CLIENT_TO_SERVER
        main = ev.query or ev.response
        assert main is not None
        q = main.question or {"name": None, "type": None, "class": None}
        resp = ev.response
        if ev.query is None:
            kind = "unmatched_response"
        elif resp is None:
            kind = "unanswered"
        else:
            kind = "lookup"
        latency = ev.latency
        label = flow.label(direction)
        if resp is not None:
            outcome = resp.header["rcode"]
            answers = _answer_text(resp)
            if answers:
                outcome += " " + answers
            if latency is not None:
                outcome += f" ({latency * 1000:.1f} ms)"
        else:
            outcome = "no response"
        summary = f"{label}  {_question_text(main)} -> {outcome}"
        if kind == "unmatched_response":
            summary += " [query not seen]"
        hostname = q["name"][:-1] if q["name"] and q["name"].endswith(".") else q["name"]
        payload: dict[str, Any] = {
            "event": kind,
            "flow": flow.describe(),
            "src": flow.src(direction), "dst": flow.dst(direction),
            "direction": str(direction),
            "timestamp": ev.query_time if ev.query_time is not None else ev.response_time,
            "response_timestamp": ev.response_time,
            "summary": summary,
            "id": main.id,
            "name": q["name"], "type": q["type"], "class": q["class"],
            "rcode": resp.header["rcode"] if resp is not None else None,
            "latency": latency,
            "answers": resp.answers if resp is not None else [],
            "authority": resp.authority if resp is not None else [],
            "additional": resp.additional if resp is not None else [],
            "query": _message_view(ev.query),
            "response": _message_view(resp),
            # netdumplings 0.5's per-lookup payload, for old eaters
            "lookup": {"hostname": hostname,
                       "when": int(round((ev.query_time or ev.response_time or 0.0) * 1000))},
        }
        return payload


def _message_view(msg: DnsMessage | None) -> dict[str, Any] | None:
    if msg is None:
        return None
    return {"header": msg.header, "questions": msg.questions, "edns": msg.edns,
            "size": msg.size, "counts": msg.counts}
