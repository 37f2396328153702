"""How DNS values are written as text: type, class and rcode names, TXT strings, limits.

Shared by the two parsers (``reference`` with dnslib, ``fast``), so that both write every
value the same way.
"""

from __future__ import annotations

import re

import dnslib

#: A DNS message never exceeds this (UDP payload limit, and TCP's 2-byte length).
MAX_MESSAGE = 65535
#: Records shown per section; the true count is given next to them.
MAX_RECORDS = 50
#: Characters of one record's data shown (long TXT or DNSKEY data gets cut).
MAX_DATA_CHARS = 256


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


def type_name(code: int) -> str:
    return str(dnslib.QTYPE.get(code, f"TYPE{code}"))


def class_name(code: int) -> str:
    return str(dnslib.CLASS.get(code, f"CLASS{code}"))


#: Extended response codes (RFC 6891 and later) that dnslib's RCODE table lacks.
EXTENDED_RCODES = {16: "BADVERS", 17: "BADKEY", 18: "BADTIME", 19: "BADMODE",
                   20: "BADNAME", 21: "BADALG", 22: "BADTRUNC", 23: "BADCOOKIE"}


def rcode_name(code: int) -> str:
    if code in EXTENDED_RCODES:
        return EXTENDED_RCODES[code]
    return str(dnslib.RCODE.get(code, f"RCODE{code}"))
