"""CA events as text: the one-line summary of a dumpling, caproto-shark style."""

from __future__ import annotations

from typing import Any

from .events import CAEvent

#: Characters of a summary line before it is cut.
MAX_SUMMARY_CHARS = 400
#: Items of a data array shown in the summary line (the payload shows more).
SUMMARY_ITEMS = 8


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
