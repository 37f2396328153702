"""ZMTP events -> dumpling payloads (zmtpdump-like summary lines plus the decoded fields).

Part of the chef shell: it reads the flow for addresses and labels; the decoder never sees it.
"""

from __future__ import annotations

from typing import Any

from netdumplings.kitchen.chef import CloseReason, Direction

from .decoder import ZmtpDecoder, handshake_result
from .events import (Command, Event, Frame, Greeting, Joined, Message, NotZmtp, Resynced,
                     as_text, show)


def _frame_brief(frame: Frame, width: int = 40) -> str:
    text = as_text(frame.preview)
    if text is not None:
        shown = text if len(text) <= width else text[:width] + "..."
        body = repr(shown)
    else:
        hx = frame.preview[:width // 2].hex()
        body = "0x" + hx + ("..." if frame.length > width // 2 else "")
    if frame.length > len(frame.preview) or (text is not None and len(text) > width):
        body += f" ({frame.length} bytes)"
    return body


def command_brief(cmd: Command) -> str:
    """The part of a summary line after the addresses, zmtpdump style."""
    f = cmd.fields
    parts = [cmd.name]
    if "properties" in f:
        parts += [f"{k}={v}" for k, v in f["properties"].items()]
    if cmd.name == "ERROR" and "reason" in f:
        parts.append(f"reason={f['reason']!r}")
    if cmd.name in ("SUBSCRIBE", "CANCEL") and "topic" in f:
        parts.append(repr(f["topic"]))
    if cmd.name == "PING" and "ttl_deciseconds" in f:
        parts.append(f"ttl={f['ttl_seconds']}s")
        if f["context_hex"]:
            parts.append(f"context={f['context_hex']}")
    if cmd.name == "PONG" and f.get("context_hex"):
        parts.append(f"context={f['context_hex']}")
    if "username" in f:
        parts.append(f"username={f['username']} password={f['password'] or '(empty)'}")
    if f.get("encrypted"):
        parts.append(f"(encrypted, {cmd.body_length} bytes)")
    if f.get("error"):
        parts.append(f"[error: {f['error']}]")
    return " ".join(parts)


def event_payload(flow: Any, direction: Direction, ev: Event,
                  timestamp: float | None) -> dict[str, Any]:
    """The dumpling payload of one decoder event seen in ``direction`` of ``flow``."""
    out: dict[str, Any] = {
        "flow": flow.describe(),
        "src": flow.src(direction),
        "dst": flow.dst(direction),
        "direction": str(direction),
        "timestamp": timestamp,
    }
    label = flow.label(direction)
    if isinstance(ev, Greeting):
        major, minor = ev.version
        out.update(type="greeting", version=[major, minor], mechanism=ev.mechanism,
                   as_server=ev.as_server, signature_hex=ev.signature_hex,
                   padding_hex=ev.padding_hex)
        out["summary"] = (f"{label}  GREETING ZMTP {major}.{minor} {ev.mechanism} "
                          f"as-server={int(ev.as_server)}")
    elif isinstance(ev, Command):
        out.update(type="command", command=ev.name, phase=ev.phase,
                   body_length=ev.body_length, **ev.fields)
        out["summary"] = f"{label}  {command_brief(ev)}"
    elif isinstance(ev, Message):
        out.update(type="message", frame_count=ev.frame_count, size=ev.size,
                   frames=[f.view() for f in ev.frames])
        if ev.frames_omitted:
            out["frames_omitted"] = ev.frames_omitted
        shown = ev.frames[:8]
        brief = " | ".join(_frame_brief(f) for f in shown)
        if ev.frame_count > len(shown):
            brief += f" | ... {ev.frame_count - len(shown)} more"
        plural = "frame" if ev.frame_count == 1 else "frames"
        out["summary"] = f"{label}  MESSAGE {ev.frame_count} {plural}: {brief}"
        if ev.subscription is not None:
            kind, topic = ev.subscription
            out["subscription"] = {"command": kind, "topic": show(topic)}
            out["summary"] += f" ({kind} {show(topic)!r}, ZMTP 3.0 style)"
        if ev.after_gap:
            out["after_gap"] = True
            out["summary"] += " (first after a gap: frames before it may be missing)"
    elif isinstance(ev, Joined):
        out.update(type="joined", skipped=ev.skipped)
        out["summary"] = (f"{label}  JOINED mid-stream (greeting not captured"
                          f"{f', {ev.skipped} bytes skipped' if ev.skipped else ''})")
    elif isinstance(ev, Resynced):
        out.update(type="resynced", missing=ev.missing, skipped=ev.skipped)
        out["summary"] = (f"{label}  RESYNCED at a frame boundary after {ev.missing} "
                          f"missing bytes"
                          f"{f' ({ev.skipped} more skipped)' if ev.skipped else ''}")
    elif isinstance(ev, NotZmtp):
        out.update(type="not_zmtp", protocol=ev.protocol, first_bytes_hex=ev.first_bytes_hex)
        out["summary"] = f"{label}  {ev.protocol}: not decoded (first bytes {ev.first_bytes_hex})"
    else:
        out.update(type="error", error=ev.error, fatal=ev.fatal, skipped=ev.skipped)
        out["summary"] = f"{label}  ERROR {ev.error}"
    return out


def close_payload(flow: Any, reason: CloseReason, c2s: ZmtpDecoder,
                  s2c: ZmtpDecoder) -> dict[str, Any]:
    """The connection's end: handshake result, socket types and each direction's counts."""
    result = handshake_result(c2s, s2c)
    counts = {str(d): {"messages": dec.messages, "commands": dec.commands,
                       "errors": dec.errors, "skipped_bytes": dec.skipped_bytes}
              for d, dec in ((Direction.CLIENT_TO_SERVER, c2s),
                             (Direction.SERVER_TO_CLIENT, s2c))}
    return {
        "flow": flow.describe(),
        "src": flow.client_str,
        "dst": flow.server_str,
        "direction": str(Direction.CLIENT_TO_SERVER),
        "timestamp": getattr(flow, "last_seen", None),
        "type": "close",
        "reason": str(reason),
        "handshake_result": result,
        "client_socket": c2s.socket_type,
        "server_socket": s2c.socket_type,
        "counts": counts,
        "summary": (f"{flow.label()}  CLOSED ({reason}) handshake={result} "
                    f"{c2s.socket_type or '?'}->{s2c.socket_type or '?'} "
                    f"messages {c2s.messages}/{s2c.messages}"),
    }
