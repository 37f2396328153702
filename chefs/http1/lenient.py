"""Reading requests that h11 refuses but real servers answer.

A sniffer sees what clients really send: request lines without a version (HTTP/0.9
``GET /``, or ``OPTIONS HTTP/1.1`` with the target left out), versions like ``HTTP/1.``,
targets with spaces or control bytes, HTTP/1.1 requests without ``Host``, header lines
with a space before the colon. Servers answer them (often with a 400, sometimes with the
page), and tshark shows them as requests. h11 is right to refuse them as a peer, but a
passive decoder that stops there loses the transaction and the rest of the connection.

``repair_request_head`` takes the bytes of a request head h11 refused and, when its first
line still reads as ``METHOD [target [version]]`` with METHOD an RFC 9110 token, returns
a head h11 accepts (same method, a legal stand-in target and version, the lines h11 cannot
take left out) together with what the client really sent and the list of deviations. The
decoder parses the repaired head with h11 as usual (so body framing stays h11's) and
reports the request as sent, with the deviations as its ``problem``. A first line that is
not even that (no token before the first space: ``GET/ HTTP/1.1``, binary junk) is left
refused: nothing says it is a request at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+\Z")
_VERSION = re.compile(rb"HTTP/1\.[01]\Z")
#: a header line h11 takes: token, colon, value without control characters (TAB allowed)
_FIELD = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+:[^\x00-\x08\x0a-\x1f\x7f]*\Z")
_HOST = re.compile(rb"host[ \t]*:", re.IGNORECASE)
#: bytes a request-target may not hold raw (RFC 9112: visible ASCII only)
_NOT_VISIBLE = re.compile(rb"[^\x21-\x7e]")
_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")


@dataclass
class Repaired:
    """A refused request head made acceptable to h11, and what was really sent."""

    head: bytes                 # the bytes to give h11 instead (the whole input, repaired)
    method: bytes
    target: bytes               # as sent (may be empty)
    version: bytes              # as sent; b"" when the request line had none
    problems: list[str] = field(default_factory=list)

    @property
    def shown_target(self) -> bytes:
        """The target as sent, with bytes outside printable ASCII percent-encoded (as for
        raw UTF-8 in an otherwise legal target): ``/\\x01`` is shown ``/%01``."""
        return _NOT_PRINTABLE.sub(lambda m: b"%%%02X" % m.group()[0], self.target)

    @property
    def http09(self) -> bool:
        """No (proper) version on the request line: the answer may be a bare HTTP/0.9
        body (Python's http.server answers ``HTTP/1.`` so), or a status line."""
        return _VERSION.match(self.version) is None


def repair_request_head(data: bytes) -> Repaired | None:
    """``data`` (a request head h11 refused, and whatever followed it) with its request
    line and header lines made acceptable to h11, or None when its first line is not a
    request line in any reading, or the head has not ended yet."""
    first_lf = data.find(b"\n")
    if first_lf < 0:
        return None
    line = data[:first_lf].rstrip(b"\r")
    rest_lines: list[bytes] = []
    pos = first_lf + 1
    while True:   # header lines up to the empty line that ends the head
        nl = data.find(b"\n", pos)
        if nl < 0:
            return None
        text = data[pos:nl].rstrip(b"\r")
        pos = nl + 1
        if not text:
            break
        rest_lines.append(text)
    after = pos
    parts = line.split()
    if not parts or _TOKEN.match(parts[0]) is None:
        return None
    method = parts[0]
    problems = []
    if line != line.strip() or b"  " in line or b"\t" in line:
        problems.append("request line not separated by single spaces")
    version = b""
    if len(parts) >= 3 and parts[-1].startswith(b"HTTP/"):
        version = parts[-1]
        target = b" ".join(parts[1:-1])
    else:
        target = b" ".join(parts[1:])
    if not target:
        problems.append("request line without a request-target")
    elif b" " in target:
        problems.append("spaces in the request-target")
    if not version:
        problems.append("request line without an HTTP version (HTTP/0.9 style)")
    elif _VERSION.match(version) is None:
        problems.append(f"bad HTTP version {version.decode('ascii', 'replace')!r}")
    if target and _NOT_VISIBLE.search(target.replace(b" ", b"")) is not None:
        problems.append("control or non-ASCII bytes in the request-target")
    # the stand-ins h11 gets: a legal target, and HTTP/1.0 unless a proper HTTP/1.1
    # request only lacked something 1.0 allows
    h11_target = (_NOT_VISIBLE.sub(lambda m: b"%%%02X" % m.group()[0], target)
                  if target else b"/")
    kept = []
    dropped = 0
    for text in rest_lines:
        if text[:1] in (b" ", b"\t") and kept:   # obs-fold: a continuation, h11's to judge
            kept.append(text)
        elif _FIELD.match(text):
            kept.append(text)
        else:
            dropped += 1
    if dropped:
        problems.append(f"{dropped} malformed header line{'s' if dropped > 1 else ''} "
                        "left out")
    has_host = any(_HOST.match(k) for k in kept)
    h11_version = b"HTTP/1.1" if version == b"HTTP/1.1" and has_host else b"HTTP/1.0"
    if version == b"HTTP/1.1" and not has_host:
        problems.append("no Host header (HTTP/1.1 requires one)")
    if not problems:
        return None   # h11 refused something this does not repair: leave it refused
    head = b"\r\n".join([method + b" " + h11_target + b" " + h11_version, *kept]) + b"\r\n\r\n"
    return Repaired(head + data[after:], method, target, version, problems)


def looks_like_status_line(data: bytes) -> bool | None:
    """Whether server bytes start like a status line (None: too few bytes to tell).

    After a request without a version, a server may answer HTTP/0.9 style: the body
    alone, no status line, ended by the close."""
    probe = b"HTTP/"
    n = min(len(data), len(probe))
    if data[:n] != probe[:n]:
        return False
    return True if n == len(probe) else None
