"""Tokens out of debug logs.

With ``-vv`` the websockets library logs every frame and header it sends or receives: the
hellos (``"token": ...``) and ``Authorization: Bearer ...`` headers with them, in ``nd-hub``,
``nd-print`` and ``nd-sniff`` alike. ``REDACT`` rewrites such records before any handler sees
them; it is installed on the websockets loggers by the hub, the eater and the sender.
"""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"""(["']token["']\s*:\s*["'])[^"']*""", re.IGNORECASE)
_BEARER = re.compile(r"(bearer\s+)\S+", re.IGNORECASE)
_HINTS = ("token", "Bearer", "bearer", "BEARER")


class Redact(logging.Filter):
    """Replace token values and bearer credentials in a record's message with ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot be formatted: leave it to the handler
            return True
        if any(h in text for h in _HINTS):
            clean = _BEARER.sub(r"\1***", _TOKEN.sub(r"\1***", text))
            if clean != text:
                record.msg, record.args = clean, ()
        return True


REDACT = Redact()


def install(*loggers: str) -> None:
    """Add ``REDACT`` to these loggers (once; adding it again does nothing)."""
    for name in loggers:
        logging.getLogger(name).addFilter(REDACT)
