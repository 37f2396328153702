"""GrpcChef: the shared gRPC capture against its ground truth and tshark's gRPC/protobuf
dissection, the schema-less protobuf decoder and the message framer, live grpcio server and
client on loopback (every call type, a failing call), and fuzzing."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdumplings.kitchen.chef import CloseReason, Direction
from netdumplings.chefs.grpc import GrpcChef, GrpcMessages, decode_protobuf
from netdumplings.kitchen.offline import read_dumplings

from conftest import DATA
from http2_helpers import Pair, _as_list, _multi_hook, chef_run, make_flow, tshark_http2_frames

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
PCAP = DATA / "grpc-calls.pcap"
EXPECTED = json.loads((DATA / "grpc-calls.expected.json").read_text())
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


def calls_of(pcap: Path, **options: Any) -> list[dict[str, Any]]:
    opts = {"GrpcChef": {"ports": [EXPECTED["server_port"]], **options}}
    return [d["payload"] for d in read_dumplings(str(pcap), [GrpcChef], chef_options=opts)]


def message_bytes(m: dict[str, Any]) -> bytes:
    view = m["data"]
    return view["text"].encode() if "text" in view else bytes.fromhex(view["hex"])


def test_capture_matches_expected() -> None:
    out = calls_of(PCAP)
    calls = [p for p in out if p["kind"] == "grpc_call"]
    assert not [p for p in out if p["kind"] != "grpc_call"]
    assert [p["stream_id"] for p in calls] == list(range(1, 2 * len(EXPECTED["calls"]), 2))
    conn = EXPECTED["connections"][0]
    for p, exp in zip(calls, EXPECTED["calls"], strict=True):
        assert (p["src"], p["dst"]) == (conn["client"], conn["server"])
        assert (p["service"], p["method"], p["path"]) == (exp["service"], exp["method"],
                                                           exp["path"])
        assert p["call_type"] == exp["kind"]
        assert p["grpc_status"] == exp["grpc_status"]
        assert p["grpc_status_name"] == exp["grpc_status_name"]
        assert p["grpc_message"] == exp["grpc_message"]
        assert p["trailers_only"] is exp["trailers_only"]
        if "user_agent" in exp:
            assert p["user_agent"] == exp["user_agent"]
        assert p["response_content_type"] == exp["response_content_type"]
        assert p["custom_metadata"] == exp["custom_metadata"]
        headers = dict(p["request_headers"])
        for name, value in exp["request_headers_expected"].items():
            assert headers[name] == value
        for ours, theirs, count in ((p["request_messages"], exp["request_messages"],
                                     p["request_message_count"]),
                                    (p["response_messages"], exp["response_messages"],
                                     p["response_message_count"])):
            assert count == len(theirs) == len(ours)
            for m, e in zip(ours, theirs):
                assert m["length"] == e["length"] == e["grpc_frame"]["length_prefix"]
                assert m["compressed"] is e["grpc_frame"]["compressed"]
                assert message_bytes(m).hex() == e["hex"]
                assert [{"field": f["field"], "value": f["value"]}
                        for f in m["protobuf"]] == e["protobuf_fields"]
        assert p["complete"] and 0 < p["latency"] < 5
        outcome = exp["grpc_status_name"]
        if exp["grpc_status"]:
            outcome += f" ({exp['grpc_message']})"
        assert p["summary"].startswith(
            f"{conn['client']} -> {conn['server']}  gRPC {exp['path']} {exp['kind']} -> "
            f"{outcome} ")
        assert p["summary"].endswith("ms")


def tshark_grpc_messages(pcap: Path, port: int) -> dict[Direction, list[dict[str, Any]]]:
    cmd = ["tshark", "-r", str(pcap), "-d", f"tcp.port=={port},http2", "-T", "json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    out: dict[Direction, list[dict[str, Any]]] = {C2S: [], S2C: []}
    for pkt in json.loads(res.stdout, object_pairs_hook=_multi_hook):
        layers = pkt["_source"]["layers"]
        direction = C2S if int(layers["tcp"]["tcp.dstport"]) == port else S2C
        protos = _as_list(layers.get("protobuf"))
        for i, g in enumerate(_as_list(layers.get("grpc"))):
            fields = []
            if i < len(protos):
                message = next(iter(protos[i].values()))
                for key, f in message.items():
                    if not key.startswith("Field("):
                        continue
                    for one in _as_list(f):
                        fields.append((int(one["protobuf.field.number"]),
                                       int(one["protobuf.field.wiretype"]),
                                       one["protobuf.field.value"].replace(":", "")))
            out[direction].append({
                "compressed": g["grpc.compressed_flag"] == "1",
                "length": int(g["grpc.message_length"]),
                "hex": g["grpc.message_data"].replace(":", ""),
                "fields": fields})
    return out


def _varint_bytes(value: int) -> str:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return out.hex()


@needs_tshark
def test_capture_agrees_with_tshark() -> None:
    port = EXPECTED["server_port"]
    theirs = tshark_grpc_messages(PCAP, port)
    calls = [p for p in calls_of(PCAP) if p["kind"] == "grpc_call"]
    for direction, key in ((C2S, "request_messages"), (S2C, "response_messages")):
        ours = [m for p in calls for m in p[key]]
        assert len(ours) == len(theirs[direction]) > 0
        for m, t in zip(ours, theirs[direction]):
            assert (m["compressed"], m["length"], message_bytes(m).hex()) == (
                t["compressed"], t["length"], t["hex"])
            mine = []
            for f in m["protobuf"]:
                value = (f["value"].encode().hex() if f["wire_type"] == 2
                         else _varint_bytes(f["value"]))
                mine.append((f["field"], f["wire_type"], value))
            assert mine == t["fields"]
    # statuses and paths from tshark's HTTP/2 header dissection
    frames = tshark_http2_frames(PCAP, port)
    status: dict[int, str] = {}
    paths: dict[int, str] = {}
    for f in frames:
        h = dict(f["headers"])
        if "grpc-status" in h:
            status[f["stream_id"]] = h["grpc-status"]
        if ":path" in h:
            paths[f["stream_id"]] = h[":path"]
    assert {p["stream_id"]: str(p["grpc_status"]) for p in calls} == status
    assert {p["stream_id"]: p["path"] for p in calls} == paths


# -- protobuf and framing --------------------------------------------------------------------


def test_protobuf_generic_decoding() -> None:
    nested = bytes.fromhex("0801") + b"\x12\x07har gow"
    msg = (b"\x08\x96\x01"                          # 1: varint 150
           + b"\x10" + b"\xff" * 9 + b"\x01"        # 2: -1 as int64
           + b"\x19" + bytes.fromhex("000000000000f83f")  # 3: double
           + b"\x25" + bytes.fromhex("0000c03f")    # 4: float 1.5
           + b"\x2a" + bytes([len(nested)]) + nested  # 5: nested message
           + b"\x32\x03\x00\xff\x10")               # 6: bytes that are not a message
    fields = decode_protobuf(msg)
    assert fields is not None
    by = {f["field"]: f for f in fields}
    assert by[1]["value"] == 150 and by[1]["wire_type"] == 0
    assert by[2]["int64"] == -1
    assert by[3]["double"] == 1.5 and by[3]["wire_type"] == 1
    assert by[4]["float"] == 1.5 and by[4]["wire_type"] == 5
    assert [(f["field"], f["value"]) for f in by[5]["message"]] == [(1, 1), (2, "har gow")]
    assert by[6]["hex"] == "00ff10"
    # not protobuf: truncated, groups, field number 0
    assert decode_protobuf(b"\x08") is None
    assert decode_protobuf(b"\x0b\x0c") is None
    assert decode_protobuf(b"\x00\x01") is None
    assert decode_protobuf(b"\x12\x05ab") is None
    # caps: depth, number of fields, string size
    deep = b"\x08\x01"
    for _ in range(20):
        deep = b"\x0a" + bytes([len(deep)]) + deep if len(deep) < 128 else deep
    d, depth = decode_protobuf(deep, max_depth=4), 0
    assert d is not None
    while d and "message" in d[0]:
        d, depth = d[0]["message"], depth + 1
    assert depth == 3 and "hex" in d[0]
    many = decode_protobuf(b"\x08\x01" * 50, max_fields=10)
    assert len(many) == 11 and many[-1] == {"truncated": True, "remaining_bytes": 80}
    long = decode_protobuf(b"\x12\x80\x02" + b"a" * 256, max_string=10)
    assert long == [{"field": 2, "wire_type": 2, "value": "a" * 10, "truncated": True,
                     "length": 256}]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=200)), max_size=6),
       st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_message_framing_any_chunking(messages: list[tuple[bool, bytes]],
                                      cuts: list[int]) -> None:
    wire = b"".join(bytes([c]) + len(m).to_bytes(4, "big") + m for c, m in messages)
    sink = GrpcMessages(max_bytes=64, max_messages=4)
    pos = i = 0
    while pos < len(wire):
        step = cuts[i % len(cuts)]
        sink.feed(wire[pos:pos + step])
        pos, i = pos + step, i + 1
    assert sink.count == len(messages) and sink.length == len(wire) and not sink.partial
    assert len(sink.messages) == min(4, len(messages))
    for kept, (compressed, m) in zip(sink.messages, messages):
        assert kept["compressed"] is compressed and kept["length"] == len(m)
        assert bytes(kept["data"]) == m[:64]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_protobuf_never_raises(data: bytes) -> None:
    fields = decode_protobuf(data, max_depth=6, max_fields=32)
    if fields is not None:
        json.dumps(fields)
        assert len(fields) <= 33


# -- gRPC exchanges made with the h2 library --------------------------------------------------


def grpc_exchange(responses: list[bytes], status: int = 0, message: str = "",
                  compress: bool = False) -> list[tuple[Direction, bytes]]:
    pair = Pair()
    req = gzip.compress(b"\x08\x07") if compress else b"\x08\x07"
    pair.client.send_headers(1, [(":method", "POST"), (":path", "/pkg.Svc/Do"),
                                 (":scheme", "http"), (":authority", "k"),
                                 ("content-type", "application/grpc"), ("te", "trailers"),
                                 ("grpc-encoding", "gzip" if compress else "identity"),
                                 ("x-table", "4")])
    pair.client.send_data(1, bytes([int(compress)]) + len(req).to_bytes(4, "big") + req,
                          end_stream=True)
    pair.c2s()
    if responses:
        pair.server.send_headers(1, [(":status", "200"), ("content-type", "application/grpc")])
        for r in responses:
            pair.server.send_data(1, b"\0" + len(r).to_bytes(4, "big") + r)
        pair.server.send_headers(1, [("grpc-status", str(status)), ("grpc-message", message)],
                                 end_stream=True)
    else:
        pair.server.send_headers(1, [(":status", "200"), ("content-type", "application/grpc"),
                                     ("grpc-status", str(status)), ("grpc-message", message)],
                                 end_stream=True)
    pair.s2c()
    return pair.chunks


def test_compressed_trailers_only_and_streaming() -> None:
    out = chef_run(GrpcChef(), make_flow(), grpc_exchange([b"\x08\x01", b"\x08\x02"],
                                                          compress=True))
    (call,) = out
    assert call["call_type"] == "server_streaming" and call["grpc_status_name"] == "OK"
    req = call["request_messages"][0]
    assert req["compressed"] and req["decompressed"] == 2
    assert req["protobuf"] == [{"field": 1, "wire_type": 0, "value": 7}]
    assert call["custom_metadata"] == [["x-table", "4"]]
    out = chef_run(GrpcChef(), make_flow(), grpc_exchange([], 5, "no%20dish%20%E2%9C%93"))
    (call,) = out
    assert call["trailers_only"] and call["grpc_status_name"] == "NOT_FOUND"
    assert call["grpc_message"] == "no dish \u2713"
    assert call["summary"].startswith(
        "127.0.0.1:40000 -> 127.0.0.1:8082  gRPC /pkg.Svc/Do unary -> NOT_FOUND (no dish \u2713)")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_grpc_never_raises(data: st.DataObject) -> None:
    raw = [(d, bytearray(b)) for d, b in grpc_exchange([b"\x08\x01\x12\x03abc"] * 2)]
    for _ in range(data.draw(st.integers(0, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        j = data.draw(st.integers(0, len(raw[i][1]) - 1))
        raw[i][1][j] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, 80))
    seq = [(d, bytes(b[k:k + cut])) for d, b in raw for k in range(0, len(b), cut)]
    chef = GrpcChef(max_messages=3, max_message_bytes=64)
    out = chef_run(chef, make_flow(), seq, CloseReason.END)
    for p in out:
        assert p["kind"] in ("grpc_call", "error")
        if p["kind"] == "grpc_call":
            assert len(p["request_messages"]) <= 3 and len(p["response_messages"]) <= 3


# -- live: grpcio server and client ----------------------------------------------------------


def _dish(n: int) -> bytes:
    name = {1: b"har gow", 2: b"siu mai", 3: b"cheung fun"}[n]
    return bytes([0x08, n, 0x12, len(name)]) + name


@pytest.mark.live
def test_live_grpcio_all_call_types(live_kitchen) -> None:
    def get_dish(request: bytes, context: grpc.ServicerContext) -> bytes:
        if request == b"\x08\x63":
            context.abort(grpc.StatusCode.NOT_FOUND, "no dish with id 99")
        return _dish(request[1])

    def list_dishes(request: bytes, context: grpc.ServicerContext):
        for n in (1, 2, 3):
            yield _dish(n)

    def order(requests, context: grpc.ServicerContext) -> bytes:
        return bytes([0x08, sum(1 for _ in requests)])

    def chat(requests, context: grpc.ServicerContext):
        for r in requests:
            yield r

    handlers = {"GetDish": grpc.unary_unary_rpc_method_handler(get_dish),
                "ListDishes": grpc.unary_stream_rpc_method_handler(list_dishes),
                "Order": grpc.stream_unary_rpc_method_handler(order),
                "Chat": grpc.stream_stream_rpc_method_handler(chat)}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("dumplings.Kitchen",
                                                                          handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with live_kitchen(f"tcp port {port}", [GrpcChef], {"GrpcChef": {"ports": [port]}}) as lk:
            with grpc.insecure_channel(f"127.0.0.1:{port}",
                                       options=[("grpc.enable_http_proxy", 0)]) as channel:
                path = "/dumplings.Kitchen/"
                assert channel.unary_unary(path + "GetDish")(b"\x08\x02", timeout=5) == _dish(2)
                assert list(channel.unary_stream(path + "ListDishes")(b"", timeout=5)) == [
                    _dish(1), _dish(2), _dish(3)]
                assert channel.stream_unary(path + "Order")(
                    iter([b"\x08\x01", b"\x08\x02"]), timeout=5) == b"\x08\x02"
                assert list(channel.stream_stream(path + "Chat")(
                    iter([b"\x0a\x01a", b"\x0a\x01b"]), timeout=5)) == [b"\x0a\x01a", b"\x0a\x01b"]
                with pytest.raises(grpc.RpcError) as err:
                    channel.unary_unary(path + "GetDish")(b"\x08\x63", timeout=5)
                assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert lk.wait_for(lambda ds: sum(d["payload"]["kind"] == "grpc_call"
                                              for d in ds) >= 5, timeout=10)
    finally:
        server.stop(0)
    calls = [p for p in lk.payloads("GrpcChef") if p["kind"] == "grpc_call"]
    got = [(p["method"], p["call_type"], p["grpc_status_name"], p["request_message_count"],
            p["response_message_count"]) for p in calls]
    assert got == [("GetDish", "unary", "OK", 1, 1), ("ListDishes", "server_streaming", "OK", 1, 3),
                   ("Order", "client_streaming", "OK", 2, 1), ("Chat", "bidi_streaming", "OK", 2, 2),
                   ("GetDish", "unary", "NOT_FOUND", 1, 0)]
    assert calls[-1]["trailers_only"] and calls[-1]["grpc_message"] == "no dish with id 99"
    assert calls[1]["response_messages"][2]["protobuf"][1]["value"] == "cheung fun"
    assert calls[3]["request_messages"][1]["protobuf"] == [
        {"field": 1, "wire_type": 2, "value": "b"}]
    for p in calls:
        assert p["service"] == "dumplings.Kitchen" and p["complete"]
        assert p["src"].endswith(str(p["flow"]["client"].rsplit(":", 1)[1]))
        assert p["dst"] == f"127.0.0.1:{port}" and 0 <= p["latency"] < 5


def test_connection_budget_bounds_kept_bytes() -> None:
    from netdumplings.chefs.grpc import Budget
    budget = Budget(100)
    a, b = GrpcMessages(64, 8, budget), GrpcMessages(64, 8, budget)
    for sink in (a, b):
        sink.feed(b"\0" + (80).to_bytes(4, "big") + b"m" * 80)
    assert budget.left == 0 and a.kept == 64 and b.kept == 36
    assert a.count == b.count == 1 and b.messages[0]["length"] == 80
    a.release()
    b.release()
    assert budget.left == 100
    none = GrpcMessages(64, 0, Budget(100))
    none.feed(b"\0\0\0\0\x02ab")
    assert none.count == 1 and none.messages == [] and none.kept == 0


def test_client_reset_past_its_grpc_timeout_is_deadline_exceeded() -> None:
    """grpcio's client resets a call whose deadline passed (RST_STREAM CANCEL, no
    grpc-status) and tells its caller DEADLINE_EXCEEDED; the chef said only "RST_STREAM
    CANCEL". The grpc-timeout it sent tells the two apart."""
    def call(timeout: str) -> list[tuple[Direction, bytes]]:
        pair = Pair()
        pair.client.send_headers(1, [(":method", "POST"), (":path", "/pkg.Svc/Do"),
                                     (":scheme", "http"), (":authority", "k"),
                                     ("content-type", "application/grpc"), ("te", "trailers"),
                                     ("grpc-timeout", timeout)])
        pair.client.send_data(1, b"\0\0\0\0\x02\x08\x07", end_stream=True)
        pair.c2s()
        for _ in range(20):                    # chef_run: 10 ms per chunk
            pair.chunks.append((C2S, b""))
        pair.client.reset_stream(1, error_code=8)
        pair.c2s()
        return pair.chunks
    (late,) = chef_run(GrpcChef(), make_flow(), call("150m"))
    assert late["deadline_exceeded"] is True and late["grpc_status"] is None
    assert late["summary"].endswith("RST_STREAM CANCEL (deadline 150m exceeded) 210.0ms")
    (cancelled,) = chef_run(GrpcChef(), make_flow(), call("5S"))
    assert cancelled["deadline_exceeded"] is False
    assert "deadline" not in cancelled["summary"]


def test_capture_joined_mid_connection(tmp_path: Path) -> None:
    """The grpcio capture started after its first call (a long-lived channel the sniffer
    joins late): every later call is reported with its type, messages and latency as in
    the full capture; its headers refer to HPACK entries made before the capture, so they
    are reported unknown, never guessed."""
    from scapy.all import TCP, rdpcap, wrpcap

    packets = rdpcap(str(PCAP))
    # the first packet of stream 3: its request HEADERS (after call 1 has finished)
    start = next(i for i, p in enumerate(packets)
                 if TCP in p and p[TCP].dport == 50051 and bytes(p[TCP].payload)[3:4] == b"\x01"
                 and int.from_bytes(bytes(p[TCP].payload)[5:9], "big") == 3)
    cut = tmp_path / "joined.pcap"
    wrpcap(str(cut), packets[start:])
    full = {c["stream_id"]: c for c in calls_of(PCAP)}
    got = [d["payload"] for d in read_dumplings(str(cut), [GrpcChef])]
    assert [p["kind"] for p in got if p["kind"] != "grpc_call"] == ["joined", "joined"]
    calls = {c["stream_id"]: c for c in got if c["kind"] == "grpc_call"}
    assert sorted(calls) == [s for s in sorted(full) if s >= 3]
    for sid, c in calls.items():
        f = full[sid]
        for key in ("call_type", "request_message_count", "response_message_count",
                    "request_bytes", "response_bytes", "latency", "complete"):
            assert c[key] == f[key], (sid, key)
        assert [m["length"] for m in c["request_messages"]] == \
            [m["length"] for m in f["request_messages"]]
        assert c["headers_unknown"] is True and c["path"] == "" and c["grpc_status"] is None
        assert "headers not decodable: joined mid-connection" in c["summary"]
