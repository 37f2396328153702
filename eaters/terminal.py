"""Text for terminals: what the printing eaters (nd-print, nd-hubstatus, nd-hubdetails)
share, so that none of them imports another."""

from __future__ import annotations


def terminal_safe(text: str) -> str:
    """``text`` with control and format characters escaped (``\\x1b``, ``\\u202e``).

    What the printers show comes from sniffed traffic: an HTTP path or a DNS name can hold
    terminal escape sequences (clear the screen, retitle the window, fake earlier output)
    or bidi overrides that make text read backwards. JSON output escapes C0 controls
    itself; everything shown as text goes through here, as tcpdump prints such bytes as
    dots."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


def terminal_safe_lines(text: str) -> str:
    """``terminal_safe`` line by line: the text's own newlines stay."""
    return "\n".join(terminal_safe(line) for line in text.split("\n"))


def _escape_char(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def duration(seconds: float) -> str:
    """Seconds as ``[Nd ]HH:MM:SS``, as uptime and status lines show them."""
    seconds = int(seconds)
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"
