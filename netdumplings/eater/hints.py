"""Where to look when a hub cannot be reached: the one line after "connection refused".

The hub listens on 127.0.0.1 unless told otherwise, so the usual first failure of a
two-host set-up is an eater on another host refused at a hub that is running fine.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..wire.messages import IN_PORT, OUT_PORT


def _refused(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, ConnectionRefusedError) or "Errno 111" in str(exc) \
                or "Connect call failed" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def refused_hint(hub: str, exc: BaseException | None, role: str = "eater") -> str:
    """'' unless ``exc`` is a refused connection; else where to look, for ``hub`` (a
    ws:// URI or host:port)."""
    if not _refused(exc):
        return ""
    parts = urlsplit(hub if "://" in hub else f"ws://{hub}")
    host, port = parts.hostname or "?", parts.port
    side, default = ("out-port", OUT_PORT) if role == "eater" else ("in-port", IN_PORT)
    if host in ("127.0.0.1", "localhost", "::1"):
        where = f"is nd-hub running on this host, with its {side} on {port}?"
    else:
        where = (f"is nd-hub running on {host}, listening on an address this host can "
                 f"reach? It listens on 127.0.0.1 only unless started with -a 0.0.0.0 (or "
                 f"one of its addresses; then give it tokens and TLS, docs: deployment)")
    return (f"nothing accepts connections at {host}:{port}: {where} {role.capitalize()}s "
            f"connect to the hub's {side} ({default} unless nd-hub -{side[0]} says "
            "otherwise)")


def with_hint(prog: str, message: str, hub: str, exc: BaseException | None,
              role: str = "eater") -> str:
    """``message``, and on a second line where to look when the hub refused to connect."""
    hint = refused_hint(hub, exc, role)
    return f"{message}\n{prog}: {hint}" if hint else message
