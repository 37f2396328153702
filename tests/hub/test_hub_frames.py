"""The hub's bulk path for plain clients (hub.frames): a kitchen's messages taken in the
groups they were read in, a plain eater's dumplings written as many frames at once. Real
hubs, real sockets; the kitchens here are websockets' sans-I/O client over a plain socket,
so that a hello and what follows it can be put in one TCP write, as a fast kitchen does."""

from __future__ import annotations

import socket

import msgpack
import orjson
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from netdumplings.hub.frames import frame_header
from hub_helpers import HubThread, dumpling, open_eater, recv_dumplings

pytestmark = pytest.mark.timeout(60)


class RawKitchen:
    """A kitchen whose frames are written exactly when and how the test says."""

    def __init__(self, uri: str) -> None:
        self.proto = ClientProtocol(parse_uri(uri))
        u = parse_uri(uri)
        self.sock = socket.create_connection((u.host, u.port), timeout=10)
        self.proto.send_request(self.proto.connect())
        self.sock.sendall(b"".join(self.proto.data_to_send()))
        while self.proto.state is State.CONNECTING:
            self.proto.receive_data(self.sock.recv(65536))
        assert self.proto.handshake_exc is None
        self.proto.events_received()

    def frames(self, *messages: bytes | dict) -> bytes:
        for m in messages:
            self.proto.send_text(m if isinstance(m, bytes) else orjson.dumps(m))
        return b"".join(self.proto.data_to_send())

    def close_code(self, timeout: float = 10.0) -> int | None:
        """Read until the hub closes: its close code (None if it did not close)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.proto.receive_data(data)
                for ev in self.proto.events_received():
                    if ev.opcode is Opcode.CLOSE:
                        self.sock.sendall(b"".join(self.proto.data_to_send()))  # the reply
                        return int.from_bytes(ev.data[:2], "big")
        except OSError:
            return None
        return None

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("text", [True, False])
def test_frame_header_is_websockets_own_framing(text):
    """Every length class of RFC 6455 (7-bit, 16-bit, 64-bit), at their edges."""
    for n in (0, 1, 125, 126, 127, 65535, 65536, 70_000):
        payload = b"x" * n
        frame = Frame(Opcode.TEXT if text else Opcode.BINARY, payload)
        assert frame_header(n, text) + payload == frame.serialize(mask=False, extensions=[])


def test_hello_and_dumplings_in_one_write_all_arrive_in_order():
    """A 0.5 kitchen's hello and 3,000 dumplings (one a fragmented message) in one TCP
    write: those read with the hello wait for it to be accepted, then all reach a 0.5
    eater (one text message each) and a protocol eater wanting msgpack one by one (one
    binary message each), in order."""
    with HubThread() as h:
        e05, _ = open_eater(h.out_uri, "e05", protocol=False, max_queue=None)
        emp, _ = open_eater(h.out_uri, "emp", batch=False, encoding="msgpack",
                            max_queue=None)
        assert h.wait(lambda: len(h.hub.eaters) == 2)
        k = RawKitchen(h.in_uri)
        data = [dumpling(i) for i in range(1, 3001)]
        head = k.frames({"kitchen_name": "raw"}, *data[:1500])
        # dumpling 1501 in three fragments
        whole = orjson.dumps(data[1500])
        k.proto.send_text(whole[:10], fin=False)
        k.proto.send_continuation(whole[10:20], fin=False)
        k.proto.send_continuation(whole[20:], fin=True)
        middle = b"".join(k.proto.data_to_send())
        k.sock.sendall(head + middle + k.frames(*data[1501:]))
        for ws, kind, decode in ((e05, str, orjson.loads),
                                 (emp, bytes, lambda m: msgpack.unpackb(m, raw=False))):
            got = []
            while len(got) < 3000:
                msg = ws.recv(timeout=10)
                assert isinstance(msg, kind)   # text / binary frames
                d = decode(msg)
                assert isinstance(d, dict)     # one dumpling a message, never a batch
                if d["metadata"]["chef"] == "TestChef":
                    got.append(d)
            assert [d["metadata"]["sequence"] for d in got] == list(range(1, 3001))
            assert got[1500] == orjson.loads(whole)
        assert h.status()["total_dumplings_in"] == 3000
        k.close()
        e05.close()
        emp.close()


def test_refused_kitchen_relays_nothing_that_came_with_its_hello():
    """Dumplings written together with a hello the hub refuses (wrong token) are never
    relayed: the frames held behind a hello are only handed over once it is accepted."""
    with HubThread(kitchen_token="right") as h:
        eater, _ = open_eater(h.out_uri, "e", protocol=False, max_queue=None)
        assert h.wait(lambda: len(h.hub.eaters) == 1)
        k = RawKitchen(h.in_uri)
        k.sock.sendall(k.frames({"kitchen_name": "x", "token": "wrong"},
                                *[dumpling(i) for i in range(1, 2001)]))
        assert k.close_code() == 1008
        k.close()
        # Its close frame is read (not left behind paused reading until the close timeout).
        assert h.wait(lambda: h.hub.open["kitchen"] == 0, timeout=3)
        with pytest.raises(TimeoutError):
            eater.recv(timeout=0.5)
        assert h.status()["total_dumplings_in"] == 0
        eater.close()


def test_flood_in_one_read_closes_and_relays_nothing_after():
    """Invalid dumplings past the flood limit within one socket read close the kitchen
    (4106), and the valid dumplings behind them in the same read are not relayed."""
    with HubThread(flood_limit=20) as h:
        eater, _ = open_eater(h.out_uri, "e", protocol=False, max_queue=None)
        assert h.wait(lambda: len(h.hub.eaters) == 1)
        k = RawKitchen(h.in_uri)
        k.sock.sendall(k.frames({"kitchen_name": "flood"}, dumpling(1),
                                *[{"junk": i} for i in range(50)], dumpling(2)))
        assert k.close_code() == 4106
        k.close()
        got = recv_dumplings(eater, 1)
        assert got[0]["metadata"]["sequence"] == 1
        with pytest.raises(TimeoutError):
            eater.recv(timeout=0.5)
        st = h.status()
        assert st["total_dumplings_in"] == 1
        eater.close()


def test_plain_eater_that_leaves_mid_burst_leaves_the_others_whole():
    """One of two 0.5 eaters hangs up while a burst is being written to both: the other
    gets every dumpling, and the hub forgets the one that left."""
    with HubThread() as h:
        stay, _ = open_eater(h.out_uri, "stay", protocol=False, max_queue=None)
        leave, _ = open_eater(h.out_uri, "leave", protocol=False, max_queue=None)
        assert h.wait(lambda: len(h.hub.eaters) == 2)
        k = RawKitchen(h.in_uri)
        k.sock.sendall(k.frames({"kitchen_name": "k"}, *[dumpling(i) for i in range(1, 101)]))
        recv_dumplings(leave, 10)
        leave.close()
        k.sock.sendall(k.frames(*[dumpling(i) for i in range(101, 20_001)]))
        got = recv_dumplings(stay, 20_000, timeout=30)
        assert [d["metadata"]["sequence"] for d in got] == list(range(1, 20_001))
        assert h.wait(lambda: len(h.hub.eaters) == 1)
        assert [e.name for e in h.hub.eaters.values()] == ["stay"]
        k.close()
        stay.close()


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_write_messages_with_and_without_an_extension(compression):
    """Without an extension the messages are written as frames at once; with one (the hub
    negotiates none, but the function is not the hub's to assume) each goes through
    websockets' send. Either way the client gets each as its own message, in order."""
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    from netdumplings.hub.frames import write_messages

    messages = [orjson.dumps(dumpling(i)) for i in range(1, 301)] + [b"x" * 70_000]

    async def handler(ws):
        assert bool(ws.protocol.extensions) == (compression is not None)
        await write_messages(ws, messages[:150], True)
        await write_messages(ws, messages[150:], True)
        await ws.wait_closed()

    async def main():
        async with serve(handler, "127.0.0.1", 0, compression=compression) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}", compression=compression,
                               max_size=None) as ws:
                return [await asyncio.wait_for(ws.recv(decode=False), 10)
                        for _ in messages]

    assert asyncio.run(main()) == messages
