"""Shared by the test_hub* modules: an in-process hub on its own loop thread, raw WebSocket
clients for hostile tests, dumpling makers. (No tests here.)"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import threading
import time
from typing import Any

import orjson
from websockets.sync.client import connect

from netdumplings.hub.server import Hub
from netdumplings.wire.messages import PROTOCOL


class HubThread:
    """A real ``Hub`` on ephemeral ports, its event loop in a thread."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("status_freq", 0)
        self.hub = Hub("127.0.0.1", 0, 0, **kwargs)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.hub.start(), self.loop).result(10)

    @property
    def in_uri(self) -> str:
        return f"ws://127.0.0.1:{self.hub.in_port}"

    @property
    def out_uri(self) -> str:
        return f"ws://127.0.0.1:{self.hub.out_port}"

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` on the hub's loop (hub state is not thread-safe)."""
        async def _do() -> Any:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(_do(), self.loop).result(10)

    def status(self) -> dict[str, Any]:
        return self.call(self.hub.status)

    def wait(self, predicate: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.call(predicate):
                return True
            time.sleep(0.02)
        return bool(self.call(predicate))

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.hub.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def __enter__(self) -> "HubThread":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def dumpling(seq: int, chef: str = "TestChef", kitchen: str | None = "k1",
             driver: str = "packet", payload: Any = None, **md: Any) -> dict[str, Any]:
    return {"metadata": {"chef": chef, "kitchen": kitchen, "creation_time": time.time(),
                         "driver": driver, "sequence": seq, **md},
            "payload": {"n": seq} if payload is None else payload}


async def cook_raw(port: int, name: str, dumplings: list[str]) -> None:
    """A raw kitchen (what any language would do): hello, welcome, the messages as given,
    then a moment for the hub to take them."""
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
        await ws.send(orjson.dumps({"kitchen_name": name, "protocol": PROTOCOL}).decode())
        await asyncio.wait_for(ws.recv(), 5)
        for d in dumplings:
            await ws.send(d)
        await asyncio.sleep(0.3)


def kitchen_hello(name: str = "k1", **extra: Any) -> dict[str, Any]:
    return {"kitchen_name": name, "interface": "lo", "filter": None, "chefs": ["TestChef"],
            "poke_interval": None, **extra}


def open_kitchen(uri: str, name: str = "k1", protocol: bool = True, **extra: Any):
    """A connected kitchen (sync client); with ``protocol`` also its welcome."""
    # max_queue=None: acks pile up unread while a test sends; a bounded queue would stop
    # the client reading and hide the hub's close frame.
    ws = connect(uri, max_size=None, compression=None, max_queue=None)
    hello = kitchen_hello(name, **extra)
    if protocol:
        hello.setdefault("protocol", PROTOCOL)
    ws.send(orjson.dumps(hello).decode())
    welcome = orjson.loads(ws.recv(timeout=5)) if protocol else None
    return ws, welcome


def open_eater(uri: str, name: str = "e1", protocol: bool = True, max_queue: int = 16,
               **extra: Any):
    ws = connect(uri, max_size=None, compression=None, max_queue=max_queue)
    hello: dict[str, Any] = {"eater_name": name, **extra}
    if protocol:
        hello.setdefault("protocol", PROTOCOL)
    ws.send(orjson.dumps(hello).decode())
    welcome = orjson.loads(ws.recv(timeout=5)) if protocol else None
    return ws, welcome


def recv_dumplings(ws: Any, n: int, timeout: float = 10.0, skip_status: bool = True,
                   decode: Any = orjson.loads) -> list[dict[str, Any]]:
    """Up to ``n`` dumplings (batches unpacked) within ``timeout``."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            msg = ws.recv(timeout=left)
        except TimeoutError:
            break
        obj = decode(msg)
        for item in obj if isinstance(obj, list) else [obj]:
            if skip_status and item["metadata"]["chef"] == "SystemStatusChef":
                continue
            out.append(item)
    return out


# -- raw WebSocket, for clients that misbehave on purpose ----------------------------------

def raw_ws(port: int, headers: dict[str, str] | None = None, timeout: float = 10.0
           ) -> socket.socket:
    """TCP + HTTP upgrade by hand; returns the socket right after the 101."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    s.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the upgrade")
        buf += chunk
    assert buf.startswith(b"HTTP/1.1 101"), buf[:100]
    return s


def frame(payload: bytes, opcode: int = 1, length: int | None = None) -> bytes:
    """A masked client frame; ``length`` lies about the payload size if given."""
    n = len(payload) if length is None else length
    head = bytes((0x80 | opcode,))
    if n < 126:
        head += bytes((0x80 | n,))
    elif n < 65536:
        head += bytes((0x80 | 126,)) + struct.pack("!H", n)
    else:
        head += bytes((0x80 | 127,)) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_close(s: socket.socket, timeout: float = 10.0) -> int | None:
    """Read frames until the server's close frame; its code (None if the TCP connection
    ended without one)."""
    s.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while len(buf) >= 2:
            op, ln = buf[0] & 0x0F, buf[1] & 0x7F
            off = 2
            if ln == 126:
                if len(buf) < 4:
                    break
                ln, off = struct.unpack("!H", buf[2:4])[0], 4
            elif ln == 127:
                if len(buf) < 10:
                    break
                ln, off = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < off + ln:
                break
            body, buf = buf[off:off + ln], buf[off + ln:]
            if op == 8:
                return struct.unpack("!H", body[:2])[0] if len(body) >= 2 else 1005
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout, BrokenPipeError):
            return None
        if not chunk:
            return None
        buf += chunk
    return None


def start_hub_proc(procs: Any, *extra: str, env: dict[str, str] | None = None,
                   in_port: int | None = None, out_port: int | None = None):
    """``nd-hub`` as a process on free ports (metrics off unless asked) -> (proc, in, out)."""
    from conftest import free_port, nd_command, wait_port
    in_port = in_port or free_port()
    out_port = out_port or free_port()
    if "--metrics-port" not in extra:
        extra += ("--metrics-port", "0")
    hub = procs(nd_command("nd-hub") + ["--in-port", str(in_port), "--out-port", str(out_port),
                                        *extra], env=env)
    wait_port(in_port)
    wait_port(out_port)
    return hub, in_port, out_port


def get_json(url: str) -> Any:
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as r:
        return orjson.loads(r.read())


def metric_samples(port: int, family: str, labels: tuple[str, ...] = ("role", "reason"),
                   token: str | None = None) -> dict[tuple, float]:
    """{label values (in ``labels`` order): value} of one family from the hub's /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={
        "Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=5) as r:
        text = r.read().decode()
    for f in text_string_to_metric_families(text):
        if f.name == family:
            return {tuple(s.labels[k] for k in labels): s.value for s in f.samples
                    if not s.name.endswith("_created")}
    return {}
