"""Sniffed text reaches terminals: nd-print (pretty and --format), nd-sniff --print
--format, nd-hubstatus and nd-hubdetails escape control and bidi characters, so an HTTP path
or a kitchen name cannot clear the screen, retitle the window or read backwards."""

from __future__ import annotations

import io

import orjson

from netdumplings.eaters.hubdetails import HubDetailsEater
from netdumplings.eaters.print import Printer, terminal_safe

EVIL = "GET /\x1b[2J\x1b]0;pwned\x07\u202eevil\x9b ok\ttab"
DUMPLING = {"metadata": {"chef": "Http1Chef\x1b[31m", "kitchen": "k\nFAKE LINE",
                         "driver": "packet", "creation_time": 1.0},
            "payload": {"summary": EVIL, "path": EVIL}}


def _clean(text: str) -> None:
    assert not any(c in text for c in "\x1b\x07\u202e\x9b\t"), repr(text)


def test_terminal_safe():
    assert terminal_safe("plain ünïcode ✓") == "plain ünïcode ✓"
    assert terminal_safe(EVIL) == ("GET /\\x1b[2J\\x1b]0;pwned\\x07\\u202eevil\\x9b ok"
                                   "\\x09tab")


def test_printers_escape_sniffed_text():
    for kwargs in ({}, {"payload": True, "color": True}, {"fmt": "{summary} {payload[path]}"},
                   {"fmt": "\\x1b[1m{chef}\\x1b[0m {kitchen}"}):
        out = io.StringIO()
        Printer(out=out, **kwargs).print(DUMPLING)
        text = out.getvalue()
        if kwargs.get("color") or "\\x1b[1m" in kwargs.get("fmt", ""):
            # our own colour codes (or the user's, in the format text) stay
            text = text.replace("\x1b[0m", "").replace("\x1b[1m", "")
            for code in ("\x1b[2m", "\x1b[36m", "\x1b[33m", "\x1b[35m"):
                text = text.replace(code, "")
        _clean(text)
        assert text.count("\n") == 1, text       # the kitchen's newline did not split it
    # a payload without a summary, shown as JSON: C1 controls and bidi escaped too
    out = io.StringIO()
    Printer(out=out).print({**DUMPLING, "payload": {"x": "\u202e\x9b"}})
    _clean(out.getvalue())
    # JSON lines stay JSON (orjson escapes C0; the rest is data for programs)
    out = io.StringIO()
    Printer(out=out, mode="json").print(DUMPLING)
    assert orjson.loads(out.getvalue()) == DUMPLING


def test_hubdetails_escapes_hello_fields():
    out = io.StringIO()
    eater = HubDetailsEater(out=out, follow=True)
    status = {"metadata": {"chef": "SystemStatusChef", "kitchen": None, "driver": "interval",
                           "creation_time": 1.0},
              "payload": {"dumpling_kitchens": [{
                  "info_from_kitchen": {"kitchen_name": "k\x1b[2J", "filter": EVIL,
                                        "interface": "lo\u202e"},
                  "info_from_hub": {"host": "127.0.0.1", "port": 1}}]}}
    import asyncio
    asyncio.run(eater.on_dumpling(status))
    _clean(out.getvalue())
    assert "k\\x1b[2J" in out.getvalue() and "lo\\u202e" in out.getvalue()   # shown, escaped
