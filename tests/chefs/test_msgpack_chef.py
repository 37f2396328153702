"""MsgpackChef / MsgpackStreamDecoder: any msgpack stream, one dumpling per object."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections import defaultdict
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdumplings.kitchen.chef import CloseReason, Direction, iter_payloads
from netdumplings.chefs.msgpack_stream import (EventTime, MsgpackChef, MsgpackError,
                                               MsgpackObject, MsgpackStreamDecoder,
                                               to_jsonable)
from netdumplings.flows.table import Flow
from netdumplings.kitchen.offline import read_dumplings


from conftest import DATA
CAPTURES = sorted(p.name for p in DATA.glob("fluentd-*.pcap"))
C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT


def new_flow(server_port: int = 7000) -> Flow:
    return Flow(1, "tcp", ("127.0.0.1", 40000), ("127.0.0.1", server_port), 0.0, True)


def run(chef: MsgpackChef, flow: Flow, direction: Direction, data: bytes,
        ts: float = 1.0) -> list[dict[str, Any]]:
    out = list(iter_payloads(chef.on_data(flow, direction, data, ts)))
    json.dumps(out, allow_nan=False)
    return out


def test_selection_is_by_user_ports_only() -> None:
    assert MsgpackChef.default_ports == ()
    assert MsgpackChef().ports == frozenset()
    assert MsgpackChef(ports="7000, 7001").ports == {7000, 7001}
    chef = MsgpackChef(ports=[7000])
    assert chef.detect(new_flow(), C2S, msgpack.packb({"a": 1})) is False


@pytest.mark.parametrize("name", CAPTURES)
def test_fluentd_captures_as_plain_msgpack(name: str) -> None:
    """Every forward-protocol message is one msgpack object: sizes and order must match."""
    truth = json.loads((DATA / name.replace(".pcap", ".expected.json")).read_text())
    options = {"MsgpackChef": {"ports": [truth["server_port"]]}}
    payloads = [d["payload"] for d in read_dumplings(DATA / name, [MsgpackChef],
                                                     chef_options=options)]
    assert not [p for p in payloads if p["kind"] == "error"]
    got: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for p in payloads:
        got[(p["flow"]["client"], p["direction"])].append(p)
    for conn in truth["connections"]:
        for direction in ("client_to_server", "server_to_client"):
            want = [m for m in conn["messages"] if m["dir"] == direction]
            ours = got.get((conn["client"], direction), [])
            assert [p["size"] for p in ours] == [m["encoded_length"] for m in want]
            offset = 0
            for p, m in zip(ours, want):
                assert p["offset"] == offset
                offset += m["encoded_length"]
                assert p["type"] == ("map(1)" if m["kind"] == "ack" else p["type"])
                if "encoded_hex" in m and m["encoded_length"] < 1500:
                    value = msgpack.unpackb(bytes.fromhex(m["encoded_hex"]), raw=False,
                                            strict_map_key=False,
                                            ext_hook=lambda c, d: msgpack.ExtType(c, d))
                    if m["kind"] == "ack":
                        assert p["value"] == value
                    if m["kind"] == "PONG":
                        assert p["value"][:5] == value[:5]
                assert p["summary"].startswith(f"{p['src']} -> {p['dst']}  {p['type']} ")


def test_objects_split_anywhere_and_many_per_chunk() -> None:
    objs = [1, "two", b"\x03", [4, {"five": 5.5}], {"six": None}, EventTime(7, 8), True,
            "x" * 300, list(range(40))]
    data = b"".join(msgpack.packb(o, default=lambda e: msgpack.ExtType(
        0, e.seconds.to_bytes(4, "big") + e.nanoseconds.to_bytes(4, "big")), strict_types=True)
        for o in objs)
    for cut in range(len(data) + 1):
        dec = MsgpackStreamDecoder()
        events = dec.feed(data[:cut], 1.0) + dec.feed(data[cut:], 2.0)
        assert [e.value for e in events] == objs
        assert sum(e.size for e in events) == len(data)
    dec = MsgpackStreamDecoder()
    events = []
    for i in range(len(data)):
        events += dec.feed(data[i:i + 1], float(i))
    assert [e.value for e in events] == objs
    assert all(e.last_timestamp == e.offset + e.size - 1 and e.first_timestamp == e.offset
               for e in events)


def test_display_of_awkward_values() -> None:
    chef = MsgpackChef(ports=[7000])
    flow = new_flow()
    data = (b"\xa4caf\xe9"                                  # str with invalid UTF-8
            + msgpack.packb(b"\x00\xffbin")                 # bin
            + msgpack.packb(msgpack.ExtType(5, b"\x01\x02"), strict_types=True)
            + msgpack.packb(msgpack.Timestamp(1700000000, 5), datetime=False)
            + msgpack.packb({1: "int key", b"k": float("nan"), "inf": float("inf")})
            + b"\x91" * 40 + b"\x01")                      # deep nesting
    out = run(chef, flow, C2S, data)
    assert [p["type"] for p in out] == ["str", "bin", "ext(5)", "Timestamp", "map(3)",
                                        "array(1)"]
    assert out[0]["value"] == "caf\\xe9" and '"caf\\\\xe9"' in out[0]["summary"]
    assert out[1]["value"] == {"$bin": "00ff62696e"}
    assert out[2]["value"] == {"$ext": 5, "$bin": "0102"}
    assert out[3]["value"]["$timestamp"] == "2023-11-14T22:13:20.000000005Z"
    assert out[4]["value"] == {"1": "int key", "k": "nan", "inf": "inf"}
    assert out[5]["truncated"] is True and "nested too deep" in json.dumps(out[5]["value"])
    assert all(p["src"] == "127.0.0.1:40000" and p["dst"] == "127.0.0.1:7000" for p in out)


def test_value_cap_and_size_stated() -> None:
    chef = MsgpackChef(ports=[7000], max_value_bytes=100)
    out = run(chef, new_flow(), C2S, msgpack.packb({"big": "z" * 5000, "list": list(range(999))}))
    p = out[0]
    assert p["truncated"] is True and p["size"] > 5000
    assert len(json.dumps(p["value"])) < 300 and len(p["summary"]) < 250


def test_bad_bytes_resync_gap_and_cut_end() -> None:
    chef = MsgpackChef(ports=[7000])
    flow = new_flow()
    out = run(chef, flow, C2S, msgpack.packb("a") + b"\xc1\xc1" + msgpack.packb("b"))
    assert [p["kind"] for p in out] == ["object", "error", "object"]
    assert [p["value"] for p in out if p["kind"] == "object"] == ["a", "b"]
    out = run(chef, flow, C2S, msgpack.packb(["partial", "x" * 50])[:20])
    assert out == []
    out = list(iter_payloads(chef.on_gap(flow, C2S, 10)))
    assert out[0]["kind"] == "error" and "missing" in out[0]["error"]
    out = run(chef, flow, C2S, msgpack.packb({"after": "gap"}))
    assert out[-1]["value"] == {"after": "gap"}
    run(chef, flow, S2C, msgpack.packb("cut short")[:4])
    out = list(iter_payloads(chef.on_close(flow, CloseReason.END)))
    assert [(p["kind"], p["direction"]) for p in out] == [("error", "server_to_client")]


def test_oversized_object_then_good_objects_in_the_same_chunk() -> None:
    dec = MsgpackStreamDecoder(max_buffer_size=1024)
    big = msgpack.packb(["x" * 3000])
    events = dec.feed(big[:500]) + dec.feed(big[500:] + msgpack.packb([1, 2]) * 3)
    assert isinstance(events[0], MsgpackError) and "larger than 1024" in events[0].reason
    assert dec.buffered <= 1024
    # resync lands somewhere in the string's bytes (they are valid fixints) and finds the
    # good arrays after it
    assert [e.value for e in events if isinstance(e, MsgpackObject)][-3:] == [[1, 2]] * 3


def test_hostile_headers_are_bounded() -> None:
    for bad in (b"\xdf\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff", b"\x91" * 5000,
                b"\xc6\xff\xff\xff\xff"):
        dec = MsgpackStreamDecoder(max_buffer_size=4096)
        start = time.monotonic()
        events = dec.feed(bad + b"\xc0" * 5000)
        assert isinstance(events[0], MsgpackError)
        assert dec.buffered <= 4096 and time.monotonic() - start < 2


def test_gives_up_after_max_errors() -> None:
    dec = MsgpackStreamDecoder(max_errors=3)
    events = dec.feed(b"\xc1\x01" * 10)
    errors = [e for e in events if isinstance(e, MsgpackError)]
    assert len(errors) == 4 and errors[-1].fatal and dec.stopped
    assert dec.feed(b"\x01") == [] and dec.skipped_bytes > 0


def test_to_jsonable_is_strict_json() -> None:
    value, truncated = to_jsonable({"n": float("-inf"), "t": (1, 2), "e": EventTime(1, 2)})
    json.dumps(value, allow_nan=False)
    assert value["e"]["seconds"] == 1 and not truncated
    assert math.isinf(float(value["n"]))


def test_to_jsonable_cuts_long_values_and_keeps_every_key() -> None:
    record = {"message": "x" * 10_000, "host": "web1", "level": "info", "pid": 42,
              "tags": ["a", "b"], "blob": b"\x00" * 5000, "tail": "last key"}
    value, truncated = to_jsonable(record, 512)
    assert truncated and list(value) == list(record)
    assert value["host"] == "web1" and value["level"] == "info" and value["pid"] == 42
    assert value["tags"] == ["a", "b"] and value["tail"] == "last key"
    assert value["message"].startswith("xxx") and value["message"].endswith("chars)")
    assert value["blob"]["$size"] == 5000
    assert len(json.dumps(value)) < 2 * 512
    # many long values: each keeps its key and a readable start
    wide, _ = to_jsonable({f"k{i}": "y" * 100 for i in range(40)}, 512)
    assert list(wide) == [f"k{i}" for i in range(40)]
    assert all(v.startswith("y" * 20) for v in wide.values())
    # a hostile map stays bounded, and says how many keys it left out
    huge, _ = to_jsonable({i: i for i in range(100_000)}, 512)
    assert len(huge) <= 300 and huge["…"].startswith("+")


# -- live: a msgpack-over-TCP exchange on lo -------------------------------------------------


@pytest.mark.live
def test_live_msgpack_stream(live_kitchen) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    replies = [{"ok": i, "bin": bytes([i, 255])} for i in range(3)]

    def serve() -> None:
        srv.settimeout(10)
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(10)
            unpacker = msgpack.Unpacker(raw=False)
            n = 0
            while n < 3:
                data = conn.recv(4096)
                if not data:
                    return
                unpacker.feed(data)
                for _ in unpacker:
                    conn.sendall(msgpack.packb(replies[n]))
                    n += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    requests = [["req", i, "Zoë"] for i in range(3)]
    try:
        with live_kitchen(f"tcp port {port}", [MsgpackChef],
                          {"MsgpackChef": {"ports": [port]}}) as lk:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                got = msgpack.Unpacker(raw=False)
                for i, r in enumerate(requests):
                    data = msgpack.packb(r)
                    c.sendall(data[:3])  # split across segments on purpose
                    time.sleep(0.01)
                    c.sendall(data[3:])
                    for _ in range(50):
                        got.feed(c.recv(4096))
                        if next(got, None) is not None:
                            break
            thread.join(timeout=5)
            assert lk.wait_for(lambda ds: len(ds) >= 6, timeout=10)
        payloads = lk.payloads("MsgpackChef")
    finally:
        srv.close()
    c2s = [p["value"] for p in payloads if p.get("direction") == "client_to_server"]
    s2c = [p["value"] for p in payloads if p.get("direction") == "server_to_client"]
    assert c2s == requests
    assert s2c == [{"ok": i, "bin": {"$bin": bytes([i, 255]).hex()}} for i in range(3)]
    assert not [p for p in payloads if p["kind"] == "error"]


# -- fuzz ---------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=700), max_size=12))
def test_fuzz_random_bytes(chunks: list[bytes]) -> None:
    chef = MsgpackChef(ports=[7000], max_object_bytes=4096, max_value_bytes=256)
    flow = new_flow()
    start = time.monotonic()
    for i, chunk in enumerate(chunks):
        for p in run(chef, flow, C2S if i % 2 else S2C, chunk, float(i)):
            assert p["kind"] in ("object", "error") and "summary" in p
            assert len(json.dumps(p)) < 8000
        assert all(d.buffered <= 4096 for d in chef.flow_state(flow).values())
    list(iter_payloads(chef.on_close(flow, CloseReason.END)))
    assert time.monotonic() - start < 5


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
                    | st.floats() | st.text(max_size=20) | st.binary(max_size=20),
                    lambda kids: st.lists(kids, max_size=5)
                    | st.dictionaries(st.text(max_size=5), kids, max_size=5), max_leaves=30),
       st.integers(0, 50), st.binary(max_size=4))
def test_fuzz_valid_objects_with_noise(obj: Any, cut: int, noise: bytes) -> None:
    data = msgpack.packb(obj)
    dec = MsgpackStreamDecoder(max_buffer_size=4096)
    events = dec.feed(data[:cut]) + dec.feed(data[cut:])
    assert len(events) == 1 and events[0].size == len(data)
    json.dumps(to_jsonable(events[0].value, 512)[0], allow_nan=False)
    events = dec.feed(noise + data)
    assert dec.buffered <= 4096


def test_iso_time_edges() -> None:
    from netdumplings.chefs.msgpack_stream import iso_time
    assert iso_time(1.9999999) == "1970-01-01T00:00:02.000000Z"
    assert iso_time(1700000002.5) == "2023-11-14T22:13:22.500000Z"
    assert iso_time(5, 7) == "1970-01-01T00:00:05.000000007Z"
    assert iso_time(1e30) is None and iso_time(float("nan")) is None
