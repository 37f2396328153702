"""The DNS fast path: the common record types written as text straight from the bytes.

dnslib builds an object per label, record and rdata and formats them through several
layers; for the few record types that make up nearly all real traffic the same text can
be produced straight from the bytes. The fast path answers only when it is sure dnslib
would parse the message the same way; anything it is unsure of (other types, odd
compression, lengths that do not add up, non-ASCII labels dnslib might reject) makes it
give up, and dnslib decides (``reference``) - so the output, errors included, is dnslib's
by definition. tests/chefs/test_dns_fastpath.py checks the two agree field by field on
real and generated messages.
"""

from __future__ import annotations

import re
import struct
from typing import Any

from .events import DnsMessage
from .presentation import (MAX_DATA_CHARS, MAX_RECORDS, class_name, rcode_name,
                           txt_presentation, type_name)


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
                              "type": _type_names.get(qtype) or _cached(_type_names, type_name, qtype),
                              "class": _class_names.get(qclass) or _cached(_class_names, class_name, qclass)})
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
                            "type": _type_names.get(rtype) or _cached(_type_names, type_name, rtype),
                            "class": _class_names.get(rclass) or _cached(_class_names, class_name, rclass),
                            "ttl": ttl, "data": text})
    rcode = bits & 0xF
    if edns is not None:
        rcode |= (edns["extended_rcode_and_flags"] >> 24) << 4
    qr = bool(bits & 0x8000)
    header = {
        "id": qid, "qr": qr, "opcode": (bits >> 11) & 0xF, "aa": bool(bits & 0x400),
        "tc": bool(bits & 0x200), "rd": bool(bits & 0x100), "ra": bool(bits & 0x80),
        "ad": bool(bits & 0x20), "cd": bool(bits & 0x10),
        "rcode": _cached(_rcode_names, rcode_name, rcode),
    }
    return DnsMessage(
        id=qid, is_response=qr, header=header, questions=questions,
        answers=sections[0], authority=sections[1], additional=sections[2], edns=edns,
        size=size, counts={"questions": qdcount, "answers": ancount,
                           "authority": nscount, "additional": n_additional},
    )

