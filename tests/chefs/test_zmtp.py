"""ZMTP: the shared captures against their ground truth, hand-built streams for the corner
cases, live pyzmq peers on loopback, and hypothesis fuzzing of the decoder and the chef."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

try:
    import zmq
except ImportError:  # pragma: no cover - pyzmq is a test dependency
    zmq = None

from netdumplings.kitchen.chef import CloseReason, Direction
from netdumplings.wire.dumpling import encode
from netdumplings.flows.table import Flow
from netdumplings.kitchen.offline import read_dumplings
from netdumplings.chefs.zmtp import (
                                     RESYNC_TRIES, Command, DecodeError, Greeting, Joined, Message, NotZmtp, Resynced, ZmtpChef,
                                     ZmtpDecoder, parse_properties)


from conftest import DATA
CAPTURES = sorted(p.name[:-len(".expected.json")] for p in DATA.glob("zmtp-*.expected.json"))
C2S, S2C = "client_to_server", "server_to_client"


# -- building ZMTP bytes ------------------------------------------------------------------


def greeting(mechanism: bytes = b"NULL", version: tuple[int, int] = (3, 1),
             as_server: int = 0, padding: bytes = b"\x00" * 7 + b"\x01") -> bytes:
    return (b"\xff" + padding + b"\x7f" + bytes(version) + mechanism.ljust(20, b"\x00")
            + bytes([as_server]) + b"\x00" * 31)


def frame(body: bytes, more: bool = False, command: bool = False,
          long: bool | None = None) -> bytes:
    long = len(body) > 255 if long is None else long
    flags = (1 if more else 0) | (2 if long else 0) | (4 if command else 0)
    size = len(body).to_bytes(8 if long else 1, "big")
    return bytes([flags]) + size + body


def command(name: bytes, data: bytes = b"") -> bytes:
    return frame(bytes([len(name)]) + name + data, command=True)


def properties(**props: bytes) -> bytes:
    out = b""
    for name, value in props.items():
        key = name.replace("_", "-").encode()
        out += bytes([len(key)]) + key + len(value).to_bytes(4, "big") + value
    return out


def ready(**props: bytes) -> bytes:
    return command(b"READY", properties(**props))


def null_session(*frames: bytes, socket_type: bytes = b"PUSH") -> bytes:
    return greeting() + ready(Socket_Type=socket_type) + b"".join(frames)


def feed_all(decoder: ZmtpDecoder, data: bytes, chunk: int | None = None) -> list[Any]:
    events: list[Any] = []
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        events += decoder.feed(data[i:i + step])
    return events


def make_flow(port: int = 7001) -> Flow:
    return Flow(1, "tcp", ("127.0.0.1", 47563), ("127.0.0.1", port), 1000.0, True)


# -- the shared captures ---------------------------------------------------------------------


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.expected.json").read_text())


def decode_capture(name: str, chef_options: dict | None = None) -> list[dict[str, Any]]:
    return [d["payload"] for d in read_dumplings(str(DATA / f"{name}.pcap"), [ZmtpChef],
                                                 chef_options=chef_options)]


def by_connection(payloads: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for p in payloads:
        out.setdefault((p["flow"]["client"], p["flow"]["server"]), []).append(p)
    return out


def check_frames(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert (g["more"], g["long"], g["length"]) == (w["more"], w["long"], w["length"])
        if "hex" in w:
            assert g["hex"] == w["hex"]
            assert g.get("text") == w.get("text")
            assert not g.get("truncated")
        else:  # frames over 2 KB: the ground truth has a hash and a prefix
            assert g["truncated"] and g["sha256"] == w["sha256"]
            assert g["hex"].startswith(w["hex_prefix"]) or w["hex_prefix"].startswith(g["hex"])


@pytest.mark.parametrize("name", CAPTURES)
@pytest.mark.parametrize("found_by", ["detect", "ports"])
def test_capture_matches_ground_truth(name: str, found_by: str) -> None:
    truth = load(name)
    options = ({"ZmtpChef": {"ports": [truth["server_port"]]}} if found_by == "ports" else None)
    payloads = decode_capture(name, options)
    conns = by_connection(payloads)
    assert set(conns) == {(c["client"], c["server"]) for c in truth["connections"]}
    everything = json.dumps(payloads)
    for conn in truth["connections"]:
        got = conns[(conn["client"], conn["server"])]
        assert not [p for p in got if p["type"] in ("error", "not_zmtp")]
        for direction in (C2S, S2C):
            mine = [p for p in got if p["direction"] == direction]
            for p in mine:
                want_src = conn["client"] if direction == C2S else conn["server"]
                assert p["src"] == want_src and p["summary"].startswith(f"{p['src']} -> {p['dst']}  ")
            # greeting
            (greet,) = [p for p in mine if p["type"] == "greeting"]
            wg = conn["greeting"][direction]
            assert greet["signature_hex"] == wg["signature_hex"]
            assert greet["version"] == wg["version"]
            assert greet["mechanism"] == wg["mechanism"]
            assert greet["as_server"] == wg["as_server"]
            # handshake commands, in order
            hs = [p for p in mine if p["type"] == "command" and p["phase"] == "handshake"]
            want_hs = conn["handshake"][direction]
            assert [p["command"] for p in hs] == [c["command"] for c in want_hs]
            for p, w in zip(hs, want_hs):
                if "properties" in w:
                    assert p["properties"] == w["properties"]
                    props = " ".join(f"{k}={v}" for k, v in w["properties"].items())
                    assert p["summary"] == f"{p['src']} -> {p['dst']}  {w['command']} {props}"
                if w["command"] == "HELLO":
                    assert p["username"] == w["username"]
                    assert p["password"] != w["password"] and set(p["password"]) == {"*"}
                    assert p["password_length"] == len(w["password"])
                    assert w["password"] not in everything
                if w["command"] == "ERROR":
                    assert p["reason"] == w["reason"]
                    assert p["body_hex"] == w["body_hex"]
            # messages, whole multipart messages one dumpling each
            msgs = [p for p in mine if p["type"] == "message"]
            want_msgs = conn["messages"][direction]
            assert len(msgs) == len(want_msgs)
            for p, w in zip(msgs, want_msgs):
                assert p["frame_count"] == len(w["frames"])
                check_frames(p["frames"], w["frames"])
            # commands after the handshake
            after = [p for p in mine if p["type"] == "command" and p["phase"] == "traffic"]
            want_after = conn["commands_after_handshake"][direction]
            if "heartbeat" in truth:
                tol = truth["heartbeat"]["tolerance"]
                assert abs(len(after) - len(want_after)) <= tol
                want_after = want_after[:len(after)]
                after = after[:len(want_after)]
            assert [p["command"] for p in after] == [c["command"] for c in want_after]
            for p, w in zip(after, want_after):
                if "topic" in w:
                    assert p["topic"] == w["topic"]
                if "ttl_deciseconds" in w:
                    assert p["ttl_deciseconds"] == w["ttl_deciseconds"]
                if "context_hex" in w:
                    assert p["context_hex"] == w["context_hex"]
        (close,) = [p for p in got if p["type"] == "close"]
        assert close["handshake_result"] == conn["handshake_result"]
        if "exchange_order" in conn:
            order = [(p["direction"], [f["hex"] for f in p["frames"]])
                     for p in got if p["type"] == "message"]
            assert order == [(e["dir"], [f["hex"] for f in e["frames"]])
                             for e in conn["exchange_order"]]


def test_heartbeat_ping_pong_counts() -> None:
    truth = load("zmtp-heartbeat")
    hb = truth["heartbeat"]
    payloads = decode_capture("zmtp-heartbeat")
    pings = [p for p in payloads if p.get("command") == "PING"]
    pongs = [p for p in payloads if p.get("command") == "PONG"]
    assert abs(len(pings) - hb["pings_expected"]) <= hb["tolerance"]
    assert abs(len(pongs) - len(pings)) <= hb["tolerance"]
    assert all(p["ttl_seconds"] * 1000 == hb["ttl_ms"] for p in pings)


def test_pub_sub_only_subscribed_topics_on_wire() -> None:
    truth = load("zmtp-pub-sub")
    payloads = decode_capture("zmtp-pub-sub")
    topics = [p["frames"][0]["text"] for p in payloads if p["type"] == "message"]
    subs = [p["topic"] for p in payloads if p.get("command") == "SUBSCRIBE"]
    cancels = [p["topic"] for p in payloads if p.get("command") == "CANCEL"]
    assert subs == truth["subscriptions"] and cancels == [truth["cancelled"]]
    published = [m["topic"] for m in truth["published_by_application"]]
    assert set(topics) < set(published)
    assert all(any(t.startswith(s) for s in subs) for t in topics)


# -- hand-built streams: the corner cases -----------------------------------------------------


def test_greeting_in_libzmq_pieces_and_byte_by_byte() -> None:
    stream = null_session(frame(b"hello"), socket_type=b"DEALER")
    whole = feed_all(ZmtpDecoder(), stream)
    pieces = ZmtpDecoder()
    split = pieces.feed(stream[:10]) + pieces.feed(stream[10:11]) + pieces.feed(stream[11:64])
    split += pieces.feed(stream[64:])
    single = feed_all(ZmtpDecoder(), stream, chunk=1)
    assert [type(e) for e in whole] == [Greeting, Command, Message]
    assert whole == split == single
    g = whole[0]
    assert g.version == (3, 1) and g.mechanism == "NULL" and not g.as_server
    assert whole[1].fields["properties"] == {"Socket-Type": "DEALER"}


def test_frame_lying_about_its_length_is_capped_and_counted() -> None:
    dec = ZmtpDecoder()
    lie = bytes([0x02]) + (2 ** 60).to_bytes(8, "big")
    events = feed_all(dec, null_session(lie + b"x" * 100_000 + frame(b"after")))
    errors = [e for e in events if isinstance(e, DecodeError)]
    assert len(errors) == 1 and errors[0].fatal and str(2 ** 60) in errors[0].error
    assert not [e for e in events if isinstance(e, Message)]
    assert dec.stopped and dec.errors == 1 and dec.skipped_bytes >= 100_000
    assert dec.buffered == 0


def test_large_frame_streams_with_bounded_memory() -> None:
    body = bytes(range(256)) * 4000  # ~1 MB, binary
    dec = ZmtpDecoder(max_shown=512)
    events = []
    stream = null_session(frame(body, more=True), frame(b"tail"))
    peak = 0
    for i in range(0, len(stream), 1460):
        events += dec.feed(stream[i:i + 1460])
        peak = max(peak, dec.buffered)
    assert peak <= 512 + 64
    (msg,) = [e for e in events if isinstance(e, Message)]
    big = msg.frames[0]
    assert big.length == len(body) and big.long and big.truncated
    assert big.preview == body[:512] and big.sha256 == hashlib.sha256(body).hexdigest()
    assert msg.frames[1].preview == b"tail" and msg.size == len(body) + 4


def test_many_frames_in_one_message_are_counted_not_kept() -> None:
    dec = ZmtpDecoder(max_frames=8)
    parts = [frame(b"p%d" % i, more=True) for i in range(1000)] + [frame(b"last")]
    (msg,) = [e for e in feed_all(dec, null_session(*parts), chunk=997) if isinstance(e, Message)]
    assert msg.frame_count == 1001 and len(msg.frames) == 8 and msg.frames_omitted == 993
    chef = ZmtpChef(max_frames=3)
    flow = make_flow()
    out = list(chef.on_data(flow, Direction.CLIENT_TO_SERVER, null_session(*parts), 1.0))
    (p,) = [p for p in out if p["type"] == "message"]
    assert p["frames_omitted"] == 998 and p["summary"].endswith("'p2' | ... 998 more")


@pytest.mark.parametrize("head, protocol", [
    (b"\xff" + b"\x00" * 7 + b"\x01" + b"\x7f" + b"\x01\x05\x00\x00", "ZMTP 2.0"),
    (b"\x01\x00", "ZMTP 1.0"),
    (b"\xff" + b"\x00" * 7 + b"\x09\x00" + b"identity!", "ZMTP 1.0"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not ZMTP"),
    (b"\xff\x00\x00\x00\x00\x00\x00\x00\x01\x55garbage", "not ZMTP"),
])
def test_not_zmtp3_is_named_once(head: bytes, protocol: str) -> None:
    chef = ZmtpChef()
    flow = make_flow()
    out = list(chef.on_data(flow, Direction.CLIENT_TO_SERVER, head + b"\x00" * 200, 1.0))
    out += list(chef.on_data(flow, Direction.SERVER_TO_CLIENT, head + b"more", 1.1))
    out += list(chef.on_data(flow, Direction.CLIENT_TO_SERVER, b"\xff" * 500, 1.2))
    out += list(chef.on_close(flow, CloseReason.FIN))
    assert [p["type"] for p in out] == ["not_zmtp"]
    assert out[0]["protocol"] == protocol and out[0]["summary"].startswith(
        "127.0.0.1:47563 -> 127.0.0.1:7001  " + protocol)
    assert chef.errors == 0


def test_truncated_stream_stops_cleanly() -> None:
    dec = ZmtpDecoder()
    events = feed_all(dec, null_session(frame(b"first", more=True), frame(b"x" * 50)[:20]))
    assert not [e for e in events if isinstance(e, Message)]
    end = dec.end()
    (err,) = end
    assert isinstance(err, DecodeError) and err.fatal
    assert "18 of 50" in err.error and "multipart message of 1 frames" in err.error
    short = ZmtpDecoder()
    assert short.feed(greeting()[:30]) == []
    (cut,) = short.end()
    assert isinstance(cut, DecodeError) and "greeting" in cut.error


def test_gap_resyncs_at_the_next_whole_frames_chunk() -> None:
    """A gap loses the frame boundaries: what was in progress is dropped (said, not passed
    off as a message), chunks that start inside a frame are skipped, and decoding resumes
    at the first chunk made of whole frames, whose first message is flagged."""
    dec = ZmtpDecoder()
    feed_all(dec, null_session(frame(b"one")))
    assert dec.messages == 1
    assert dec.feed(frame(b"head", more=True)) == []
    (err,) = dec.gap(1000)
    assert isinstance(err, DecodeError) and not err.fatal and err.skipped == 1000
    assert "1000 bytes missing" in err.error and "multipart message of 1 frames" in err.error
    assert not dec.stopped and dec.buffered == 0
    inside = frame(b"x" * 300)[40:]
    assert dec.feed(inside) == []            # starts inside a frame: skipped
    events = dec.feed(frame(b"tail") + frame(b"two", more=True) + frame(b"parts"))
    assert isinstance(events[0], Resynced)
    assert (events[0].missing, events[0].skipped) == (1000, len(inside))
    first, second = events[1:]
    assert first.after_gap and [f.preview for f in first.frames] == [b"tail"]
    assert not second.after_gap and [f.preview for f in second.frames] == [b"two", b"parts"]
    (later,) = dec.feed(frame(b"three"))
    assert not later.after_gap and dec.messages == 4
    assert dec.skipped_bytes == 1000 + len(inside) and dec.errors == 1
    # two gaps before a boundary is found: one resync, the missing bytes added up
    dec.gap(10)
    dec.gap(20)
    (resynced, msg) = dec.feed(frame(b"four"))
    assert resynced == Resynced(30, 0) and msg.after_gap


def test_gap_gives_up_when_no_boundary_comes() -> None:
    dec = ZmtpDecoder()
    feed_all(dec, null_session(frame(b"one")))
    dec.gap(5)
    events: list[Any] = []
    for _ in range(RESYNC_TRIES + 5):
        events += dec.feed(b"\xff not a frame boundary")
    (err,) = events
    assert isinstance(err, DecodeError) and err.fatal and dec.stopped
    assert f"no frame boundary in the {RESYNC_TRIES} chunks" in err.error
    assert dec.feed(frame(b"later")) == []
    # a stopped direction stays stopped through a gap
    assert dec.gap(7) == [] and dec.stopped


def _drop_packets_holding(capture: str, bodies: list[bytes], out: Path) -> None:
    from scapy.all import Raw, rdpcap, wrpcap

    packets = rdpcap(str(DATA / f"{capture}.pcap"))
    keep = [p for p in packets
            if not (Raw in p and any(b in bytes(p[Raw]) for b in bodies))]
    assert len(keep) == len(packets) - len(bodies)
    wrpcap(str(out), keep)


def test_capture_with_a_lost_segment_resumes_after_it(tmp_path: Path) -> None:
    """A real pyzmq PUSH/PULL capture with the segment of one message removed: the kitchen
    reports the gap, the chef resyncs, and every later message is decoded as sent."""
    truth = load("zmtp-push-pull")
    (conn,) = truth["connections"]
    want = conn["messages"][C2S]
    lost = bytes.fromhex(want[2]["frames"][0]["hex"])
    cut = tmp_path / "lost.pcap"
    _drop_packets_holding("zmtp-push-pull", [lost], cut)
    payloads = [d["payload"] for d in read_dumplings(
        str(cut), [ZmtpChef], chef_options={"ZmtpChef": {"ports": [truth["server_port"]]}})]
    c2s = [p for p in payloads if p["direction"] == C2S and p["type"] != "command"]
    types = [p["type"] for p in c2s]
    i = types.index("error")
    assert types[i:i + 2] == ["error", "resynced"]
    assert c2s[i]["fatal"] is False and c2s[i]["skipped"] == len(frame(lost))
    assert c2s[i + 1]["missing"] == len(frame(lost)) and c2s[i + 1]["skipped"] == 0
    msgs = [p for p in c2s if p["type"] == "message"]
    assert len(msgs) == len(want) - 1
    for p, w in zip(msgs, want[:2] + want[3:]):
        check_frames(p["frames"], w["frames"])
    assert [bool(p.get("after_gap")) for p in msgs] == [False, False, True, False]
    assert not [p for p in payloads if p["type"] == "error" and p["fatal"]]
    (close,) = [p for p in payloads if p["type"] == "close"]
    assert close["counts"][C2S]["messages"] == len(want) - 1
    assert close["counts"][C2S]["errors"] == 1


def test_reserved_flag_bits_stop_the_direction() -> None:
    dec = ZmtpDecoder()
    events = feed_all(dec, null_session(b"\x80\x05hello" + frame(b"never")))
    (err,) = [e for e in events if isinstance(e, DecodeError)]
    assert "reserved" in err.error and dec.stopped
    assert not [e for e in events if isinstance(e, Message)]


def test_commands_error_ping_subscribe_and_bad_properties() -> None:
    stream = greeting() + b"".join([
        ready(Socket_Type=b"SUB", Identity=b"\x00\xffbin"),
        command(b"SUBSCRIBE", b"topic."),
        command(b"CANCEL", b"\x00\x01"),
        command(b"PING", (25).to_bytes(2, "big") + b"ctx"),
        command(b"PONG", b"ctx"),
        command(b"ERROR", b"\x0bbad request"),
        frame(b"^RROR\x03400", command=True),
        command(b"READY", b"\x0bSocket-Type\x7f\xff\xff\xffPUB"),
        command(b"X-CUSTOM", b"\x01\x02"),
        frame(b"\x09READY", command=True),
    ])
    events = [e for e in feed_all(ZmtpDecoder(), stream, chunk=3) if isinstance(e, Command)]
    names = [e.name for e in events]
    assert names == ["READY", "SUBSCRIBE", "CANCEL", "PING", "PONG", "ERROR", "ERROR", "READY",
                     "X-CUSTOM", "?"]
    assert events[0].fields["properties"]["Identity"] == "00ff62696e"
    assert events[0].fields["properties_hex"]["Identity"] == "00ff62696e"
    assert events[1].fields["topic"] == "topic." and events[2].fields["topic"] == "0001"
    assert events[3].fields["ttl_deciseconds"] == 25 and events[3].fields["context_hex"] == "637478"
    assert events[4].fields["context_hex"] == "637478"
    assert events[5].fields["reason"] == "bad request" and not events[5].fields.get("malformed_name")
    assert events[6].fields["reason"] == "400" and events[6].fields["malformed_name"]
    assert "claims" in events[7].fields["error"] and events[7].fields["properties"] == {}
    assert events[8].fields["body_hex"] == "0102"
    assert "error" in events[9].fields
    assert events[0].phase == "handshake" and events[1].phase == "traffic"


def test_plain_and_curve_handshakes() -> None:
    dec = ZmtpDecoder()
    hello = command(b"HELLO", b"\x06dimsum\x0csteamed-buns")
    events = feed_all(dec, greeting(b"PLAIN") + hello + command(b"INITIATE", properties(
        Socket_Type=b"PUSH")))
    (h, i) = [e for e in events if isinstance(e, Command)]
    assert h.fields["username"] == "dimsum" and h.fields["password_length"] == 12
    assert "steamed" not in json.dumps(h.fields)
    assert i.fields["properties"] == {"Socket-Type": "PUSH"} and dec.handshake_done
    curve = ZmtpDecoder()
    events = feed_all(curve, greeting(b"CURVE") + command(b"HELLO", b"\x01\x00" + bytes(198))
                      + command(b"MESSAGE", bytes(40)))
    cmds = [e for e in events if isinstance(e, Command)]
    assert [c.name for c in cmds] == ["HELLO", "MESSAGE"]
    assert all(c.fields["encrypted"] for c in cmds) and "username" not in cmds[0].fields


def test_zmtp30_subscription_messages_are_labelled() -> None:
    chef = ZmtpChef()
    flow = make_flow()
    c2s, s2c = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
    out = list(chef.on_data(flow, s2c, greeting(version=(3, 0)) + ready(Socket_Type=b"PUB"), 1))
    out += list(chef.on_data(flow, c2s, greeting(version=(3, 0)) + ready(Socket_Type=b"SUB")
                             + frame(b"\x01news.") + frame(b"\x00news."), 2))
    subs = [p["subscription"] for p in out if p["type"] == "message"]
    assert subs == [{"command": "SUBSCRIBE", "topic": "news."},
                    {"command": "CANCEL", "topic": "news."}]


def test_chef_payload_conventions() -> None:
    chef = ZmtpChef(max_shown=16)
    flow = make_flow()
    out = list(chef.on_data(flow, Direction.CLIENT_TO_SERVER, null_session(
        frame(b"topic", more=True), frame(b"\x00\x01\x02" * 40)), 1234.5))
    out += list(chef.on_close(flow, CloseReason.END))
    for p in out:
        encode({"metadata": {}, "payload": p})  # JSON-serialisable as the kitchen sends it
        assert {"flow", "src", "dst", "direction", "timestamp", "summary", "type"} <= set(p)
        assert "\n" not in p["summary"]
    ready_p = out[1]
    assert ready_p["summary"] == "127.0.0.1:47563 -> 127.0.0.1:7001  READY Socket-Type=PUSH"
    msg = out[2]
    assert msg["timestamp"] == 1234.5 and msg["frame_count"] == 2
    assert msg["frames"][1]["truncated"] and msg["frames"][1]["length"] == 120
    assert len(msg["frames"][1]["hex"]) == 32 and "text" not in msg["frames"][1]
    assert out[-1]["type"] == "close" and out[-1]["handshake_result"] == "incomplete"


def test_parse_properties_never_reads_past_the_end() -> None:
    props, hexes, err = parse_properties(b"\x04Name\x00\x00\x00\x05ab")
    assert props == {} and err is not None
    props, hexes, err = parse_properties(b"\x01A\x00\x00\x00\x01x\x00")
    assert props == {"A": "x"} and err is not None


# -- fuzzing ----------------------------------------------------------------------------------

VALID = null_session(
    frame(b"header", more=True), frame(b"m" * 300, more=True), frame(b""),
    command(b"SUBSCRIBE", b"t"), command(b"PING", b"\x00\x1e"), frame(b"\x00\xff" * 20),
    socket_type=b"DEALER")
BOUND = 2048 * 8 + 4096 + 64


def _run_chef(streams: list[tuple[Direction, bytes]]) -> list[dict]:
    chef = ZmtpChef(max_frames=8, max_command=4096)
    flow = make_flow()
    out: list[dict] = []
    for direction, data in streams:
        out += list(chef.on_data(flow, direction, data, 1.0))
        state = chef.flow_state(flow)
        assert all(d.buffered <= BOUND for d in state.decoders.values())
    out += list(chef.on_close(flow, CloseReason.END))
    for p in out:
        encode({"metadata": {}, "payload": p})
        # the chef's last-resort catch must never have been needed
        assert not p.get("error", "").startswith("decoder error")
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000), st.integers(1, 300))
def test_fuzz_random_bytes(data: bytes, chunk: int) -> None:
    dec = ZmtpDecoder(max_frames=8, max_command=4096)
    for i in range(0, len(data), chunk):
        dec.feed(data[i:i + chunk])
        assert dec.buffered <= BOUND
    dec.end()
    # Random bytes after a valid greeting reach the frame parser.
    stream = greeting() + data
    _run_chef([(Direction.CLIENT_TO_SERVER, stream[i:i + chunk])
               for i in range(0, len(stream), chunk)])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(VALID)), st.integers(1, 500), st.randoms(use_true_random=False))
def test_fuzz_mutated_stream(mutations: list, cut: int, chunk: int, rnd: random.Random) -> None:
    data = bytearray(VALID)
    for pos, value in mutations:
        data[pos] = value
    data = bytes(data[:cut])
    started = time.monotonic()
    pieces = [(rnd.choice(list(Direction)), data[i:i + chunk])
              for i in range(0, len(data) or 1, chunk)]
    out = _run_chef(pieces)
    assert time.monotonic() - started < 5
    # An intact stream kept in one direction must still decode (spread over both
    # directions it is two broken streams, which only must not crash).
    if not mutations and cut == len(VALID) and len({d for d, _ in pieces}) == 1:
        assert sum(p["type"] == "message" for p in out) >= 1


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2 ** 64 - 1), st.binary(max_size=500))
def test_fuzz_any_long_length(size: int, tail: bytes) -> None:
    dec = ZmtpDecoder(max_frame=1 << 20)
    events = feed_all(dec, null_session(b"\x02" + size.to_bytes(8, "big") + tail), chunk=97)
    events += dec.end()
    assert dec.buffered <= BOUND
    if size > 1 << 20:
        assert dec.stopped and any(isinstance(e, DecodeError) for e in events)
    elif size <= len(tail):
        assert any(isinstance(e, Message) and e.size == size for e in events)


# -- live: real pyzmq peers on loopback --------------------------------------------------------

@pytest.fixture
def kitchen_fixture(request: pytest.FixtureRequest) -> Any:
    """The lead's ``live_kitchen`` fixture (tests/conftest.py)."""
    if zmq is None:
        pytest.skip("pyzmq not installed")
    try:
        return request.getfixturevalue("live_kitchen")
    except pytest.FixtureLookupError:
        pytest.skip("live_kitchen fixture (tests/conftest.py) not available")


def _bind(sock: Any) -> int:
    sock.bind("tcp://127.0.0.1:*")
    return int(sock.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])


def _payloads(live: Any, port: int) -> list[dict]:
    return [d["payload"] for d in list(live.dumplings)
            if d["metadata"]["chef"] == "ZmtpChef"
            and d["payload"]["flow"]["server"] == f"127.0.0.1:{port}"]


def _messages(live: Any, port: int, direction: str) -> list[list[str]]:
    return [[f.get("text", f["hex"]) for f in p["frames"]] for p in _payloads(live, port)
            if p["type"] == "message" and p["direction"] == direction]


@contextlib.contextmanager
def _context() -> Any:
    ctx = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


@pytest.mark.live
@pytest.mark.timeout(60)
def test_live_push_pull(kitchen_fixture: Any) -> None:
    with _context() as ctx:
        pull = ctx.socket(zmq.PULL)
        port = _bind(pull)
        with kitchen_fixture(f"tcp port {port}", [ZmtpChef]) as live:
            push = ctx.socket(zmq.PUSH)
            push.connect(f"tcp://127.0.0.1:{port}")
            sent = [f"dumpling {i}".encode() for i in range(5)] + [b"\x00\xff" * 200]
            for body in sent:
                push.send(body)
            assert all(pull.recv() == body for body in sent)
            assert live.wait_for(lambda ds: len(_messages(live, port, C2S)) >= len(sent), timeout=10)
        got = _messages(live, port, C2S)
        assert got[:5] == [[b.decode()] for b in sent[:5]] and got[5] == [sent[5].hex()]
        props = {p["properties"]["Socket-Type"] for p in _payloads(live, port)
                 if p.get("command") == "READY"}
        assert props == {"PUSH", "PULL"}


@pytest.mark.live
@pytest.mark.timeout(60)
def test_live_pub_sub(kitchen_fixture: Any) -> None:
    with _context() as ctx:
        pub = ctx.socket(zmq.PUB)
        port = _bind(pub)
        with kitchen_fixture(f"tcp port {port}", [ZmtpChef],
                             {"ZmtpChef": {"ports": [port]}}) as live:
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.SUBSCRIBE, b"steamer.")
            sub.connect(f"tcp://127.0.0.1:{port}")
            deadline = time.monotonic() + 10
            got = None
            while got is None and time.monotonic() < deadline:  # slow-joiner: publish until seen
                pub.send_multipart([b"oven.tray", b"skip"])
                pub.send_multipart([b"steamer.basket", b"ready"])
                if sub.poll(100):
                    got = sub.recv_multipart()
            assert got == [b"steamer.basket", b"ready"]
            assert live.wait_for(lambda ds: _messages(live, port, S2C), timeout=10)
        payloads = _payloads(live, port)
        subs = [p["topic"] for p in payloads if p.get("command") == "SUBSCRIBE"]
        assert subs == ["steamer."]
        msgs = _messages(live, port, S2C)
        assert msgs and all(m == ["steamer.basket", "ready"] for m in msgs)


@pytest.mark.live
@pytest.mark.timeout(60)
def test_live_req_rep(kitchen_fixture: Any) -> None:
    with _context() as ctx:
        rep = ctx.socket(zmq.REP)
        port = _bind(rep)
        with kitchen_fixture(f"tcp port {port}", [ZmtpChef]) as live:
            req = ctx.socket(zmq.REQ)
            req.setsockopt(zmq.ROUTING_ID, b"waiter-9")
            req.connect(f"tcp://127.0.0.1:{port}")
            for i in range(3):
                req.send(b"question %d" % i)
                assert rep.recv() == b"question %d" % i
                rep.send(b"answer %d" % i)
                assert req.recv() == b"answer %d" % i
            assert live.wait_for(lambda ds: len(_messages(live, port, S2C)) >= 3, timeout=10)
        assert _messages(live, port, C2S) == [["", f"question {i}"] for i in range(3)]
        assert _messages(live, port, S2C) == [["", f"answer {i}"] for i in range(3)]
        (ready_req,) = [p for p in _payloads(live, port)
                        if p.get("command") == "READY" and p["direction"] == C2S]
        assert ready_req["properties"] == {"Socket-Type": "REQ", "Identity": "waiter-9"}


@pytest.mark.live
@pytest.mark.timeout(60)
def test_live_plain_auth(kitchen_fixture: Any) -> None:
    from zmq.auth.thread import ThreadAuthenticator

    with _context() as ctx:
        auth = ThreadAuthenticator(ctx)
        auth.start()
        try:
            auth.configure_plain(domain="*", passwords={"dimsum": "har-gow-42"})
            pull = ctx.socket(zmq.PULL)
            pull.plain_server = True
            port = _bind(pull)
            with kitchen_fixture(f"tcp port {port}", [ZmtpChef]) as live:
                push = ctx.socket(zmq.PUSH)
                push.plain_username, push.plain_password = b"dimsum", b"har-gow-42"
                push.connect(f"tcp://127.0.0.1:{port}")
                push.send(b"authenticated")
                assert pull.poll(10_000) and pull.recv() == b"authenticated"
                bad = ctx.socket(zmq.PUSH)
                bad.plain_username, bad.plain_password = b"dimsum", b"wrong-pw"
                bad.connect(f"tcp://127.0.0.1:{port}")
                assert live.wait_for(lambda ds: _messages(live, port, C2S) and any(
                    p.get("command") == "ERROR" for p in _payloads(live, port)), timeout=10)
        finally:
            auth.stop()
    payloads = _payloads(live, port)
    hellos = [p for p in payloads if p.get("command") == "HELLO"]
    assert len(hellos) >= 2 and {p["username"] for p in hellos} == {"dimsum"}
    dump = json.dumps(payloads)
    assert "har-gow-42" not in dump and "wrong-pw" not in dump
    assert any(p.get("command") == "WELCOME" for p in payloads)
    assert [p["reason"] for p in payloads if p.get("command") == "ERROR"][:1] == ["400"]
    assert _messages(live, port, C2S) == [["authenticated"]]


def test_joined_mid_stream_decodes_from_a_frame_boundary(tmp_path: Path) -> None:
    """A capture that starts after the greeting (live sniffing of an open connection)."""
    from scapy.all import Raw, rdpcap, wrpcap

    truth = load("zmtp-push-pull")
    (conn,) = truth["connections"]
    want = conn["messages"][C2S]
    second = bytes.fromhex(want[1]["frames"][0]["hex"])
    packets = rdpcap(str(DATA / "zmtp-push-pull.pcap"))
    start = next(i for i, p in enumerate(packets) if Raw in p and second in bytes(p[Raw]))
    cut = tmp_path / "midstream.pcap"
    wrpcap(str(cut), packets[start:])
    payloads = [d["payload"] for d in read_dumplings(
        str(cut), [ZmtpChef], chef_options={"ZmtpChef": {"ports": [truth["server_port"]]}})]
    c2s = [p for p in payloads if p["direction"] == C2S]
    assert c2s[0]["type"] == "joined"
    msgs = [p for p in c2s if p["type"] == "message"]
    assert len(msgs) == len(want) - 1
    for p, w in zip(msgs, want[1:]):
        check_frames(p["frames"], w["frames"])
    assert not [p for p in payloads if p["type"] in ("error", "not_zmtp")]


def test_mid_stream_waits_for_a_boundary_then_gives_up_on_noise() -> None:
    dec = ZmtpDecoder(midstream=True)
    msg = frame(b"hello", more=True) + frame(b"world")
    assert dec.feed(frame(b"x" * 100)[30:]) == []  # starts inside a frame: dropped
    events = dec.feed(msg)
    assert isinstance(events[0], Joined) and events[0].skipped == 72
    assert [f.preview for f in events[1].frames] == [b"hello", b"world"]
    noise = ZmtpDecoder(midstream=True)
    events = []
    for _ in range(20):
        events += noise.feed(b"\x00\x40 this is not zmtp at all")
    assert [type(e) for e in events] == [NotZmtp] and noise.stopped
