"""How the hub lets a connection in: hello, validation, token, limits - before any of that,
the least memory and time an anonymous peer can make it spend.

Both ports accept messages of at most ``MAX_HELLO_BYTES`` until a hello is accepted (the
kitchen port then raises its connection's limit to ``--max-message-mb``): a 16 MB "hello" is
refused at its frame header (1009), unread. Connections that have not said hello yet are at
most ``--max-unauthenticated`` per port (or the role's connection limit, if lower); a new one
beyond that closes the oldest still silent one (4104), so idle anonymous connections can
neither pile up nor lock out the real clients, which say hello at once.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Any

import orjson
from pydantic import ValidationError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .._version import __version__
from ..wire.messages import (CLOSE_BAD_HELLO, CLOSE_HELLO_TIMEOUT, CLOSE_POLICY, CLOSE_REASONS,
                             CLOSE_TOO_MANY, Welcome)

log = logging.getLogger("netdumplings.hub")

MAX_NAME = 200          # characters of a peer-chosen name (kitchen, eater, chef) kept for
                        # logs and metric labels
MAX_HELLO_BYTES = 64 << 10  # a hello is a few hundred bytes; nothing bigger is read before
                        # one is accepted
CLOSE_WAIT = 10.0       # seconds a close handshake may take before the TCP connection is cut


def printable(name: Any) -> str:
    """A peer-chosen name made safe for a log line or a metric label: at most ``MAX_NAME``
    characters, control characters escaped (a newline in a name cannot forge log lines)."""
    text = str(name)[:MAX_NAME]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class NoDataFrames(logging.Filter):
    """websockets logs every frame at debug level (nd-hub -vv): one line per dumpling.
    Data frames are left out; everything else stays (tokens redacted, see logredact)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.DEBUG and record.msg in ("< %s", "> %s")
                    and record.args and str(record.args[0]).startswith(  # type: ignore
                        ("TEXT", "BINARY", "CONT")))


NO_DATA_FRAMES = NoDataFrames()


class Quiet:
    """At most ``burst`` log lines per kind of event per ``window`` seconds, then one line
    saying how many were left out: a peer failing or reconnecting in a loop cannot flood
    the log (the counts are in the metrics)."""

    def __init__(self, burst: int, window: float) -> None:
        self.burst = burst
        self.window = window
        self.seen: dict[tuple[str, ...], list[float]] = {}   # key -> [window start, events]

    def __call__(self, level: int, key: tuple[str, ...], msg: str, *args: Any,
                 **kwargs: Any) -> None:
        now = time.monotonic()
        seen = self.seen.get(key)
        if seen is None or now - seen[0] >= self.window:
            if seen is not None and seen[1] > self.burst:
                log.log(level, "%d more %s messages were not logged", seen[1] - self.burst,
                        "/".join(key))
            seen = self.seen[key] = [now, 0]
        seen[1] += 1
        if seen[1] <= self.burst:
            log.log(level, msg, *args, **kwargs)
            if seen[1] == self.burst:
                log.log(level, "(more %s messages in the next %.0fs are only counted)",
                        "/".join(key), self.window - (now - seen[0]))


def addr(ws: ServerConnection) -> tuple[str, int]:
    ra = ws.remote_address or ("?", 0)
    return ra[0], ra[1]


def peer(ws: ServerConnection) -> str:
    host, port = addr(ws)
    return f"{host}:{port}"


async def close_hard(ws: ServerConnection, code: int, wait: float = CLOSE_WAIT) -> None:
    """Close with ``code``; if the peer does not take the close frame within ``wait``
    seconds (it stopped reading: websockets would wait for room in the socket for ever),
    cut the TCP connection, which frees what was waiting to be written."""
    try:
        await asyncio.wait_for(ws.close(code, CLOSE_REASONS[code]), wait)
    except (asyncio.TimeoutError, ConnectionClosed, OSError):
        pass
    finally:
        if ws.transport is not None and not ws.transport.is_closing():
            ws.transport.abort()


class Admission:
    """The hello half of ``Hub`` (a mixin: the hub's attributes are used as they are)."""

    limits: dict[str, int]
    refused: dict[tuple[str, str], int]
    hello_timeout: float
    max_unauthenticated: int
    max_message_size: int
    admitted: dict[str, int]
    instance: str
    _pending: dict[str, dict[ServerConnection, None]]
    _warn_q: Quiet
    _info_q: Quiet
    _closers: set[asyncio.Future]

    def _refuse(self, role: str, reason: str) -> None:
        key = (role, reason)
        self.refused[key] = self.refused.get(key, 0) + 1

    def _warn(self, key: tuple[str, ...], msg: str, *args: Any, **kwargs: Any) -> None:
        self._warn_q(logging.WARNING, key, msg, *args, **kwargs)

    def _info(self, key: tuple[str, ...], msg: str, *args: Any) -> None:
        self._info_q(logging.INFO, key, msg, *args)

    def _close_later(self, ws: ServerConnection, code: int) -> None:
        fut = asyncio.ensure_future(close_hard(ws, code))
        self._closers.add(fut)
        fut.add_done_callback(self._closers.discard)

    async def _hello(self, ws: ServerConnection, role: str) -> dict[str, Any] | None:
        pending = self._pending[role]
        pending[ws] = None
        if len(pending) > min(self.limits[role], self.max_unauthenticated):
            oldest = next(iter(pending))
            del pending[oldest]
            self._refuse(role, "hello_timeout")
            self._warn((role, "hello_timeout"), "%s from %s closed: no hello yet and %d "
                       "newer connections waiting", role, peer(oldest), len(pending))
            self._close_later(oldest, CLOSE_HELLO_TIMEOUT)
        try:
            raw = await asyncio.wait_for(ws.recv(), self.hello_timeout)
        except asyncio.TimeoutError:
            if ws not in pending:   # already closed to make room (and counted)
                return None
            self._refuse(role, "hello_timeout")
            await ws.close(CLOSE_HELLO_TIMEOUT, CLOSE_REASONS[CLOSE_HELLO_TIMEOUT])
            return None
        finally:
            pending.pop(ws, None)
        try:
            if len(raw) > MAX_HELLO_BYTES:
                raise ValueError(f"hello of {len(raw)} bytes (limit {MAX_HELLO_BYTES})")
            hello = orjson.loads(raw)
            if not isinstance(hello, dict):
                raise ValueError("hello is not a JSON object")
        except ValueError as exc:
            self._warn((role, "bad_hello"), "bad %s hello from %s: %s", role, peer(ws), exc)
            self._refuse(role, "bad_hello")
            await ws.close(CLOSE_BAD_HELLO, CLOSE_REASONS[CLOSE_BAD_HELLO])
            return None
        return hello

    def _authorized(self, ws: ServerConnection, token: Any, expected: str | None) -> bool:
        if expected is None:
            return True
        if not isinstance(token, str) or not token:
            header = ws.request.headers.get("Authorization", "") if ws.request else ""
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer":
                return False
        return hmac.compare_digest(token.strip().encode(), expected.encode())

    def _welcome(self, role: str, batch: bool, encoding: str) -> str:
        extra: dict[str, Any] = {"ack": True} if role == "kitchen" else {}
        return Welcome(hub_version=__version__, role=role, batch=batch, encoding=encoding,
                       max_message_size=self.max_message_size, instance=self.instance,
                       **extra).model_dump_json(exclude_none=True)

    async def _admit(self, ws: ServerConnection, role: str, model: Any,
                     token: str | None) -> tuple[Any, dict[str, Any]] | None:
        """Hello, validation, auth, limit: the parsed hello or None (connection closed).
        The caller decrements ``admitted[role]`` when an admitted connection ends. Only
        clients with the token count towards the limit."""
        raw_hello = await self._hello(ws, role)
        if raw_hello is None:
            return None
        try:
            hello = model.model_validate(raw_hello)
        except ValidationError as exc:
            err = exc.errors()[0]
            why = f"{'.'.join(map(str, err.get('loc', ())))}: {err.get('msg')}"
            self._warn((role, "bad_hello"), "bad %s hello from %s: %s", role, peer(ws), why)
            self._refuse(role, "bad_hello")
            # The reason says what to fix (a close reason holds 123 bytes).
            reason = f"{CLOSE_REASONS[CLOSE_BAD_HELLO]}: {why}".encode()[:123]
            await ws.close(CLOSE_BAD_HELLO, reason.decode("utf-8", "ignore"))
            return None
        if not self._authorized(ws, raw_hello.get("token"), token):
            self._warn((role, "auth"), "%s from %s refused: wrong or missing token", role,
                       peer(ws))
            self._refuse(role, "auth")
            await ws.close(CLOSE_POLICY, CLOSE_REASONS[CLOSE_POLICY])
            return None
        if self.admitted[role] >= self.limits[role]:
            self._refuse(role, "too_many")
            self._warn((role, "too_many"), "%s from %s refused: %d connections already", role,
                       peer(ws), self.limits[role])
            await ws.close(CLOSE_TOO_MANY, CLOSE_REASONS[CLOSE_TOO_MANY])
            return None
        self.admitted[role] += 1
        if role == "kitchen":   # admitted: now (and only now) it may send big messages
            ws.protocol.max_message_size = self.max_message_size
        return hello, raw_hello
