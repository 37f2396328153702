"""The reference DNS parser: dnslib parses the whole message (raising on anything malformed).

The decoder's output is defined by this module; ``fast`` must agree with it wherever it
answers at all. dnslib's name decompression is wrapped in a work budget (``_BoundedBuffer``)
so that no single message can cost more than a bounded amount of CPU.
"""

from __future__ import annotations

from typing import Any

import dnslib
from dnslib.bimap import BimapError
from dnslib.buffer import BufferError as DnsBufferError
from dnslib.label import DNSBuffer

from .events import DnsMessage
from .presentation import (MAX_DATA_CHARS, MAX_MESSAGE, MAX_RECORDS, class_name, rcode_name,
                           txt_presentation, type_name)


def _name(label: Any) -> str:
    return str(label)


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
        "type": type_name(rr.rtype),
        "class": class_name(rr.rclass),
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
        "rcode": rcode_name(rcode),
    }
    questions = [{"name": _name(q.qname), "type": type_name(q.qtype),
                  "class": class_name(q.qclass)} for q in rec.questions[:MAX_RECORDS]]
    return DnsMessage(
        id=h.id, is_response=bool(h.qr), header=header, questions=questions,
        answers=_section(rec.rr), authority=_section(rec.auth),
        additional=_section(additional), edns=edns, size=len(data),
        counts={"questions": len(rec.questions), "answers": len(rec.rr),
                "authority": len(rec.auth), "additional": len(additional)},
    )

