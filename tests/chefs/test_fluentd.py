"""FluentdForwardChef / FluentdForwardDecoder: shared captures, byte-split decoding, bad
input, a live fluent-logger exchange on lo, and fuzzing."""

from __future__ import annotations

import base64
import gzip
import json
import os
import socket
import struct
import threading
import time
from collections import defaultdict
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdumplings.kitchen.chef import CloseReason, Direction, iter_payloads
from netdumplings.chefs.fluentd import FluentdForwardChef, FluentdForwardDecoder
from netdumplings.chefs.msgpack_stream import EventTime
from netdumplings.flows.table import Flow
from netdumplings.kitchen.offline import read_dumplings


from conftest import DATA
CAPTURES = sorted(p.name for p in DATA.glob("fluentd-*.pcap"))
C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
EVENT_KINDS = {"Message", "Forward", "PackedForward", "CompressedPackedForward"}


def expected(name: str) -> dict[str, Any]:
    return json.loads((DATA / name.replace(".pcap", ".expected.json")).read_text())


def time_of(event: dict[str, Any]) -> Any:
    """Our event time in the ground truth's form."""
    if event["time_type"] == "EventTime":
        return {"type": "EventTime", "seconds": event["seconds"],
                "nanoseconds": event["nanoseconds"]}
    return int(event["epoch"])


def new_flow(client_port: int = 51000, server_port: int = 24224) -> Flow:
    return Flow(1, "tcp", ("127.0.0.1", client_port), ("127.0.0.1", server_port), 0.0, True)


def run(chef: FluentdForwardChef, flow: Flow, direction: Direction, data: bytes,
        ts: float = 1.0) -> list[dict[str, Any]]:
    out = list(iter_payloads(chef.on_data(flow, direction, data, ts)))
    json.dumps(out, allow_nan=False)  # every payload must be strict JSON
    return out


def pack(obj: Any) -> bytes:
    def default(o: Any) -> Any:
        if isinstance(o, EventTime):
            return msgpack.ExtType(0, struct.pack(">II", o.seconds, o.nanoseconds))
        raise TypeError(o)
    # surrogateescape: a str holding lone surrogates goes out as the invalid UTF-8 bytes
    # behind them, as a peer with a broken encoder would send it
    return msgpack.packb(obj, default=default, use_bin_type=True, strict_types=True,
                         unicode_errors="surrogateescape")


# -- the shared captures, through the real kitchen ------------------------------------------


def check_message(got: dict[str, Any], want: dict[str, Any], big_records: bool) -> None:
    assert got["kind"] == want["kind"]
    assert got["direction"] == want["dir"]
    assert got["size"] == want["encoded_length"]
    assert got["summary"].startswith(f"{got['src']} -> {got['dst']}  ")
    kind = want["kind"]
    if kind in EVENT_KINDS:
        assert got["mode"] == kind and got["tag"] == want["tag"]
        assert got["event_count"] == len(want["entries"])
        assert f"tag={want['tag']}" in got["summary"]
        assert got["option"] == want.get("option")
        for ours, theirs in zip(got["events"], want["entries"], strict=True):
            assert time_of(ours) == theirs["time"]
            assert isinstance(ours["epoch"], float) and ours["time"].endswith("Z")
            if ours.get("record_truncated"):
                assert not big_records
                assert ours["record_size"] == len(msgpack.packb(theirs["record"]))
                # every key is kept (issue 19): long values are cut, never the keys
                # after them
                assert list(ours["record"]) == list(theirs["record"])
                for key, value in theirs["record"].items():
                    shown = ours["record"][key]
                    assert shown == value or (isinstance(value, str)
                                              and shown.startswith(value[:100]))
            else:
                assert ours["record"] == theirs["record"]
        for key in ("array_length", "packed_entries_length", "compressed_entries_length"):
            if key in want:
                assert got[key] == want[key], key
        if want.get("option") and "chunk" in want["option"]:
            assert got["chunk"] == want["option"]["chunk"]
    elif kind == "ack":
        assert got["ack"] == want["ack"] and got["matched"] is True
        assert 0 <= got["ack_latency"] < 5
        assert "ms for " in got["summary"]
    elif kind == "HELO":
        assert got["nonce"] == want["options"]["nonce"]["$bin"]
        assert got["auth"] == want["options"]["auth"]["$bin"]
        assert got["keepalive"] == want["options"]["keepalive"]
    elif kind == "PING":
        for key in ("client_hostname", "shared_key_salt", "shared_key_hexdigest", "username",
                    "password_digest"):
            assert got[key] == want[key], key
    elif kind == "PONG":
        for key in ("auth_result", "reason", "server_hostname", "shared_key_hexdigest"):
            assert got[key] == want[key], key
        assert got["auth"] == ("ok" if want["auth_result"] else "failed")
    else:  # pragma: no cover - the ground truth has no other kinds
        raise AssertionError(kind)


@pytest.mark.parametrize("name", CAPTURES)
@pytest.mark.parametrize("big_records", [False, True], ids=["default", "big-records"])
def test_capture_matches_ground_truth(name: str, big_records: bool) -> None:
    truth = expected(name)
    options: dict[str, Any] = {"ports": [truth["server_port"]], "max_events": 10_000}
    if big_records:
        options["max_record_bytes"] = 1 << 20
    dumplings = list(read_dumplings(DATA / name, [FluentdForwardChef],
                                    chef_options={"FluentdForwardChef": options}))
    payloads = [d["payload"] for d in dumplings]
    assert all(d["metadata"]["chef"] == "FluentdForwardChef" for d in dumplings)
    assert not [p for p in payloads if p["kind"] in ("error", "unknown")]
    by_conn: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    closes = {}
    for p in payloads:
        if p["kind"] == "close":
            closes[p["flow"]["client"]] = p
        else:
            by_conn[(p["flow"]["client"], p["direction"])].append(p)
            assert p["timestamp"] > 1e9
    total_events = 0
    for conn in truth["connections"]:
        for direction in ("client_to_server", "server_to_client"):
            want = [m for m in conn["messages"] if m["dir"] == direction]
            got = by_conn.get((conn["client"], direction), [])
            assert len(got) == len(want), (conn["client"], direction)
            for g, w in zip(got, want):
                assert g["flow"]["server"] == conn["server"]
                assert g["src" if direction == "client_to_server" else "dst"] == conn["client"]
                check_message(g, w, big_records)
                total_events += g.get("event_count", 0)
        close = closes[conn["client"]]
        assert close["unacked"] == 0
        assert close["acked"] == sum(m["kind"] == "ack" for m in conn["messages"])
        pongs = [m for m in conn["messages"] if m["kind"] == "PONG"]
        assert close["auth_result"] == (pongs[-1]["auth_result"] if pongs else None)
    assert total_events == truth["counts"]["events"]
    n_c2s = sum(len(v) for (c, d), v in by_conn.items() if d == "client_to_server")
    n_s2c = sum(len(v) for (c, d), v in by_conn.items() if d == "server_to_client")
    assert (n_c2s, n_s2c) == (truth["counts"]["messages_client_to_server"],
                              truth["counts"]["messages_server_to_client"])


def test_large_record_truncated_with_original_size() -> None:
    name = "fluentd-segmented.pcap"
    truth = expected(name)
    big = next(m for c in truth["connections"] for m in c["messages"]
               if m["encoded_length"] > 65536)
    payloads = [d["payload"] for d in read_dumplings(DATA / name, [FluentdForwardChef],
                chef_options={"FluentdForwardChef": {"max_record_bytes": 1000}})]
    got = next(p for p in payloads if p.get("size") == big["encoded_length"])
    event = got["events"][0]
    assert event["record_truncated"] is True
    assert event["record_size"] == len(msgpack.packb(big["entries"][0]["record"]))
    assert len(json.dumps(event["record"])) < 1300
    assert len(json.dumps(got)) < 4000


# -- the decoder fed the ground truth's bytes, split everywhere --------------------------


def streams() -> list[tuple[str, str, bytes, list[dict[str, Any]]]]:
    out = []
    for name in CAPTURES:
        for conn in expected(name)["connections"]:
            for direction in ("client_to_server", "server_to_client"):
                msgs = [m for m in conn["messages"] if m["dir"] == direction]
                if msgs and all("encoded_hex" in m for m in msgs):
                    data = b"".join(bytes.fromhex(m["encoded_hex"]) for m in msgs)
                    out.append((name, direction, data, msgs))
    return out


STREAMS = streams()


def summary_of(decoded: list[Any]) -> list[tuple]:
    return [(m.kind, m.tag, m.event_count, m.size, m.offset) for m in decoded]


def want_of(msgs: list[dict[str, Any]]) -> list[tuple]:
    out, offset = [], 0
    for m in msgs:
        out.append((m["kind"], m.get("tag"), len(m.get("entries", [])), m["encoded_length"],
                    offset))
        offset += m["encoded_length"]
    return out


@pytest.mark.parametrize("name,direction,data,msgs", STREAMS,
                         ids=[f"{s[0]}-{s[1]}-{i}" for i, s in enumerate(STREAMS)])
def test_decoder_split_at_every_byte(name: str, direction: str, data: bytes,
                                     msgs: list[dict[str, Any]]) -> None:
    want = want_of(msgs)
    whole = FluentdForwardDecoder().feed(data, 1.0)
    assert summary_of(whole) == want
    step = max(1, len(data) // 150)  # bounded work: ~150 cut points per stream
    for cut in list(range(0, len(data) + 1, step)) + [len(data) - 1]:
        dec = FluentdForwardDecoder()
        got = dec.feed(data[:cut], 1.0) + dec.feed(data[cut:], 2.0)
        assert summary_of(got) == want, cut
        assert dec.stream.buffered == 0
    dec = FluentdForwardDecoder()
    got = []
    for i in range(len(data)):
        got += dec.feed(data[i:i + 1], float(i))
    assert summary_of(got) == want
    # the capture time of each message is that of its last byte, the first that of its first
    for m, (_, _, _, size, offset) in zip(got, want):
        assert m.first_timestamp == float(offset) and m.last_timestamp == float(offset + size - 1)


def test_every_boundary_of_one_stream_exhaustively() -> None:
    name, direction, data, msgs = next(s for s in STREAMS if "auth" in s[0]
                                       and s[1] == "server_to_client")
    want = want_of(msgs)
    for cut in range(len(data) + 1):
        dec = FluentdForwardDecoder()
        assert summary_of(dec.feed(data[:cut]) + dec.feed(data[cut:])) == want


# -- chef behaviour on built messages and bad input ----------------------------------------


def test_modes_times_and_ack_latency() -> None:
    chef = FluentdForwardChef()
    flow = new_flow()
    msgs = [
        ["app.access", EventTime(1700000000, 123456789), {"path": "/"}, {"chunk": "c1"}],
        ["app.access", [[1700000001, {"a": 1}], [1700000002.5, {"b": b"\x00\xff"}]],
         {"chunk": "c2", "size": 2}],
        ["app.packed", pack([1700000003, {"c": "x"}]) + pack([EventTime(1700000004, 5), {}])],
        ["app.gz", gzip.compress(pack([1, {"m": 1}])) + gzip.compress(pack([2, {"m": 2}])),
         {"compressed": "gzip", "chunk": "c3"}],
    ]
    out = run(chef, flow, C2S, b"".join(pack(m) for m in msgs), ts=10.0)
    assert [p["kind"] for p in out] == ["Message", "Forward", "PackedForward",
                                        "CompressedPackedForward"]
    first = out[0]["events"][0]
    assert first["time"] == "2023-11-14T22:13:20.123456789Z"
    assert first["seconds"] == 1700000000 and first["nanoseconds"] == 123456789
    assert out[1]["events"][1]["time_type"] == "float"
    assert out[1]["events"][1]["record"] == {"b": {"$bin": "00ff"}}
    assert out[1]["size_option"] == 2
    assert [e["record"] for e in out[3]["events"]] == [{"m": 1}, {"m": 2}]
    assert out[0]["summary"] == ("127.0.0.1:51000 -> 127.0.0.1:24224  Message tag=app.access "
                                 'events=1 chunk=c1 first={"path":"/"}')
    acks = run(chef, flow, S2C, pack({"ack": "c2"}) + pack({"ack": "c1"}), ts=10.0015)
    assert [a["request_tag"] for a in acks] == ["app.access", "app.access"]
    assert acks[0]["request_events"] == 2
    assert acks[0]["ack_latency"] == pytest.approx(0.0015)
    assert acks[0]["summary"] == ("127.0.0.1:24224 -> 127.0.0.1:51000  ack chunk=c2 1.5ms "
                                  "for Forward tag=app.access events=2")
    stray = run(chef, flow, S2C, pack({"ack": "nope"}), ts=11.0)
    assert stray[0]["matched"] is False and stray[0]["ack_latency"] is None
    close = list(iter_payloads(chef.on_close(flow, CloseReason.FIN)))
    assert close[-1]["kind"] == "close" and close[-1]["unacked"] == 1
    assert close[-1]["unacked_chunks"] == ["c3"]


def test_garbage_between_messages_is_skipped_and_counted() -> None:
    chef = FluentdForwardChef()
    flow = new_flow()
    good = pack(["t", 1, {"k": "v"}])
    out = run(chef, flow, C2S, good + b"\xc1\xc1\xff\x00garbage" + good)
    kinds = [p["kind"] for p in out]
    assert kinds.count("Message") == 2
    errors = [p for p in out if p["kind"] in ("error", "unknown")]
    assert errors and all("ERROR" in p["summary"] for p in errors)
    decoder = chef.flow_state(flow).decoders[C2S]
    assert decoder.errors == len(errors) and decoder.stream.skipped_bytes > 0


def test_lying_lengths_and_huge_headers_are_bounded() -> None:
    chef = FluentdForwardChef(max_message_bytes=4096)
    flow = new_flow()
    # a map claiming 2**32-1 entries, an array claiming 2**32-1, a str claiming 2 GB
    for bad in (b"\xdf\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xdb\x7f\xff\xff\xff"):
        fresh = new_flow()
        out = run(chef, fresh, C2S, bad + b"\x00" * 100 + pack(["t", 1, {"ok": 1}]))
        assert [p["kind"] for p in out] == ["error", "Message"]
        assert chef.flow_state(fresh).decoders[C2S].stream.skipped_bytes >= 100
    # a bin that claims 3000 bytes and never delivers: held, within the cap, then cut at close
    out = run(chef, flow, C2S, pack(["t", 1, {"a": 1}]) + b"\x93\xa1t\xc5\x0b\xb8" + b"x" * 100)
    assert [p["kind"] for p in out] == ["Message"]
    state = chef.flow_state(flow)
    assert state.decoders[C2S].stream.buffered <= 4096
    close = list(iter_payloads(chef.on_close(flow, CloseReason.END)))
    assert close[0]["kind"] == "error" and "stream ended inside" in close[0]["error"]
    # a message over the cap is reported and skipped; the next one decodes
    chef2 = FluentdForwardChef(max_message_bytes=4096)
    flow2 = new_flow()
    big = pack(["t", 1, {"a": "x" * 10000}])
    out = run(chef2, flow2, C2S, big[:3000]) + run(chef2, flow2, C2S, big[3000:])
    out += run(chef2, flow2, C2S, pack(["t", 2, {"after": True}]))
    assert out[0]["kind"] == "error" and "larger than 4096" in out[0]["error"]
    assert out[-1]["kind"] == "Message" and out[-1]["events"][0]["record"] == {"after": True}


def test_gap_resyncs_on_next_message() -> None:
    chef = FluentdForwardChef()
    flow = new_flow()
    m1, m2 = pack(["t", 1, {"n": 1}]), pack(["t", 2, {"n": 2}])
    out = run(chef, flow, C2S, m1[:5])
    out += list(iter_payloads(chef.on_gap(flow, C2S, 40)))
    out += run(chef, flow, C2S, b"\x01\x02" + m2)
    assert [p["kind"] for p in out] == ["error", "Message"]
    assert "missing" in out[0]["error"] and out[1]["events"][0]["record"] == {"n": 2}


def test_decoder_gives_up_after_too_many_errors() -> None:
    dec = FluentdForwardDecoder(max_errors=5)
    got = []
    for _ in range(20):
        got += dec.feed(pack({"not an ack": 1}))
    assert sum(m.kind == "unknown" for m in got) == 5
    assert got[-1].kind == "error" and got[-1].fields["fatal"] is True
    assert dec.stream.stopped and dec.feed(pack(["t", 1, {}])) == []


def test_record_and_event_caps() -> None:
    chef = FluentdForwardChef(max_record_bytes=64, max_events=3)
    flow = new_flow()
    record = {"msg": "y" * 500, "bad": "caf\udce9", "nested": [[[[1]]]]}
    data = pack(["t", [[i, record] for i in range(10)]])
    assert b"caf\xe9" in data
    out = run(chef, flow, C2S, data)
    p = out[0]
    assert p["event_count"] == 10 and p["events_shown"] == 3 and len(p["events"]) == 3
    event = p["events"][0]
    assert event["record_truncated"] is True and event["record_size"] > 500
    assert event["record"]["msg"].startswith("yyy") and "chars)" in event["record"]["msg"]
    # the long first value is cut; the keys after it stay (issue 19)
    assert event["record"]["bad"] == "caf\\xe9" and event["record"]["nested"] == [[[[1]]]]
    ok = run(chef, flow, C2S, pack(["t", 1, {"who": "caf\udce9", "bin": b"\x00\x01"}]))
    assert ok[0]["events"][0]["record"] == {"who": "caf\\xe9", "bin": {"$bin": "0001"}}


def test_gzip_bomb_is_capped() -> None:
    dec = FluentdForwardDecoder(max_decompressed_bytes=100_000)
    entries = pack([1, {"z": "0" * 60000}]) * 20  # 1.2 MB of entries
    msg = pack(["t", gzip.compress(entries), {"compressed": "gzip"}])
    [m] = dec.feed(msg)
    assert m.kind == "CompressedPackedForward"
    assert m.fields["packed_entries_length"] == 100_000
    assert any("larger than 100000" in p for p in m.problems)
    [bad] = FluentdForwardDecoder().feed(pack(["t", b"not gzip", {"compressed": "gzip"}]))
    assert bad.problems and bad.event_count == 0


# -- live: fluent-logger against a forward server written here ----------------------------


class ForwardServer:
    """A minimal Fluentd forward server: reads msgpack, answers acks when asked."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[Any] = []
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        deadline = time.monotonic() + 30
        while not self._stop and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1 << 20)
        conn.settimeout(10)
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                unpacker.feed(data)
                for obj in unpacker:
                    self.received.append(obj)
                    if (isinstance(obj, list) and obj and isinstance(obj[-1], dict)
                            and "chunk" in obj[-1]):
                        conn.sendall(msgpack.packb({"ack": obj[-1]["chunk"]}))

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.mark.live
def test_live_fluent_logger_and_acks(live_kitchen) -> None:
    from fluent import sender

    server = ForwardServer()
    port = server.port
    try:
        with live_kitchen(f"tcp port {port}", [FluentdForwardChef],
                          {"FluentdForwardChef": {"ports": [port]}}) as lk:
            logger = sender.FluentSender("live", host="127.0.0.1", port=port,
                                         nanosecond_precision=True)
            records = [{"seq": i, "dish": "har gow", "note": "Zoë 点心"} for i in range(3)]
            for r in records:
                assert logger.emit("orders", r), logger.last_error
            logger.close()
            # a second client asks for acks (Message mode with a chunk option)
            chunks = [base64.b64encode(os.urandom(16)).decode() for _ in range(2)]
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                acks = msgpack.Unpacker(raw=False)
                for i, chunk in enumerate(chunks):
                    c.sendall(pack(["live.acked", EventTime(1700000000 + i, 7), {"i": i},
                                    {"chunk": chunk}]))
                    got = None
                    for _ in range(50):
                        acks.feed(c.recv(4096))
                        got = next(acks, None)
                        if got is not None:
                            break
                    assert got == {"ack": chunk}
            assert lk.wait_for(lambda ds: sum(d["payload"].get("kind") == "ack"
                                              for d in ds) >= 2, timeout=10)
        payloads = lk.payloads("FluentdForwardChef")
    finally:
        server.close()
    messages = [p for p in payloads if p["kind"] == "Message"]
    assert [m["tag"] for m in messages] == ["live.orders"] * 3 + ["live.acked"] * 2
    assert [m["events"][0]["record"] for m in messages[:3]] == records
    assert all(m["events"][0]["time_type"] == "EventTime" for m in messages)
    assert all(m["array_length"] == 3 for m in messages[:3])
    assert [m["chunk"] for m in messages[3:]] == chunks
    acks_seen = [p for p in payloads if p["kind"] == "ack"]
    assert [a["ack"] for a in acks_seen] == chunks
    assert all(a["matched"] and 0 <= a["ack_latency"] < 2 for a in acks_seen)
    assert all(p["dst"] == f"127.0.0.1:{port}" for p in messages)
    assert not [p for p in payloads if p["kind"] in ("error", "unknown")]


# -- fuzz -----------------------------------------------------------------------------------



VALID = [s[2] for s in STREAMS]


def _feed_all(chef: FluentdForwardChef, flow: Flow, chunks: list[bytes]) -> list[dict]:
    out = []
    start = time.monotonic()
    for i, chunk in enumerate(chunks):
        out += run(chef, flow, C2S if i % 3 else S2C, chunk, float(i))
        for d in Direction:
            assert chef.flow_state(flow).decoders[d].stream.buffered <= 4096
    out += list(iter_payloads(chef.on_gap(flow, C2S, 7)))
    out += list(iter_payloads(chef.on_close(flow, CloseReason.END)))
    json.dumps(out, allow_nan=False)
    assert time.monotonic() - start < 5
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=600), max_size=12))
def test_fuzz_random_bytes(chunks: list[bytes]) -> None:
    chef = FluentdForwardChef(max_message_bytes=4096)
    out = _feed_all(chef, new_flow(), chunks)
    assert all("summary" in p and "kind" in p for p in out)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_streams(data: st.DataObject) -> None:
    stream = bytearray(data.draw(st.sampled_from(VALID)))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(stream) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "header"]))
        if op == "flip":
            stream[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            stream[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del stream[pos:pos + data.draw(st.integers(1, 16))]
        else:  # a lying length header
            stream[pos:pos] = data.draw(st.sampled_from(
                [b"\xdf\xff\xff\xff\xff", b"\xdd\x7f\xff\xff\xff", b"\xc6\x00\x10\x00\x00",
                 b"\xdb\xff\xff\xff\xff", b"\x91" * 2000]))
        if not stream:
            stream = bytearray(b"\x00")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [bytes(stream[a:b]) for a, b in zip([0] + cuts, cuts + [len(stream)])]
    chef = FluentdForwardChef(max_message_bytes=4096)
    out = _feed_all(chef, new_flow(), chunks)
    assert all(p["kind"] in EVENT_KINDS | {"ack", "HELO", "PING", "PONG", "error", "unknown",
                                           "close"} for p in out)


def test_options_from_strings_and_pending_acks_bounded() -> None:
    """Options arrive as text from ``--chef-option``; pending acks never grow past the cap."""
    payloads = [d["payload"] for d in read_dumplings(
        DATA / "fluentd-forward-auth.pcap", [FluentdForwardChef],
        chef_options={"FluentdForwardChef": {"ports": "24224", "max_record_bytes": "40"}})]
    events = [e for p in payloads if p["kind"] == "PackedForward" for e in p["events"]]
    assert events and any(e.get("record_truncated") for e in events)
    chef = FluentdForwardChef(max_pending_acks=5)
    flow = new_flow()
    for i in range(20):
        run(chef, flow, C2S, pack(["t", i, {}, {"chunk": f"c{i}"}]))
    assert list(chef.flow_state(flow).pending) == [f"c{i}" for i in range(15, 20)]
    assert run(chef, flow, S2C, pack({"ack": "c0"}))[0]["matched"] is False
    assert run(chef, flow, S2C, pack({"ack": "c19"}))[0]["matched"] is True
