"""The Channel Access decoder on its own, as h11 is used: bytes in, events out.

No kitchen, no chef, no flows, no scapy: the bytes are the real ones of the shared capture
(read with the capture reader only, each circuit's segments fed in capture order) or made
by caproto, the side is the decoder's own ``Side``, and hostile bytes (truncated, lying
lengths and counts, garbage, gaps) must come back as events, never as exceptions. The last
test holds the decoder's modules to their import boundary.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict

import caproto
import pytest
from caproto import ChannelType

from netdumplings.chefs.channel_access import (RESYNC_TRIES, CAEvent, ChannelAccessDecoder,
                                               Side, describe_event,
                                               looks_like_version_header)

from conftest import DATA, l4_payloads

PCAP = DATA / "epics-ca.pcap"
C2S, S2C = Side.CLIENT_TO_SERVER, Side.SERVER_TO_CLIENT
SERVER = "127.0.0.1:5064"


def truth() -> dict:
    return json.loads((DATA / "epics-ca.expected.json").read_text())


def commands(events: list[CAEvent]) -> list[str]:
    return [e.command for e in events]


# -- the real capture ----------------------------------------------------------------------


def test_capture_circuits_give_the_ground_truth_commands() -> None:
    """Every TCP segment of every circuit, fed as captured: every command of each side in
    order with every ground-truth field, each one naming its PV, notify responses timed."""
    circuits: dict[str, ChannelAccessDecoder] = defaultdict(ChannelAccessDecoder)
    events: dict[str, list[CAEvent]] = defaultdict(list)
    next_seq: dict[tuple[str, str], int] = {}
    for p in l4_payloads(PCAP):
        if p.transport != "tcp":
            continue
        side = C2S if p.dst == SERVER else S2C
        client = p.src if side is C2S else p.dst
        # loopback, no loss: each side's segments follow one another exactly
        assert next_seq.get((p.src, p.dst), p.seq) == p.seq
        next_seq[(p.src, p.dst)] = (p.seq + len(p.data)) & 0xFFFFFFFF
        events[client] += circuits[client].feed(side, p.data, p.time)
    ground = truth()
    assert len(events) == ground["counts"]["tcp_circuits"]
    for conn in ground["connections"]:
        got = events[conn["client"]]
        assert not [e for e in got if e.error], conn["client"]
        assert all(isinstance(e.direction, Side) for e in got)
        pv = next(c["name"] for c in conn["commands"] if c["command"] == "CreateChanRequest")
        for side in Side:
            mine = [e for e in got if e.direction is side]
            want = [c for c in conn["commands"] if c["dir"] == side.value]
            assert commands(mine) == [c["command"] for c in want]
            for event, c in zip(mine, want):
                assert event.command_id == c["command_id"]
                for key, value in c.items():
                    if key not in ("dir", "command", "command_id"):
                        assert event.fields[key] == value, (c["command"], key)
                if any(k in c for k in ("cid", "sid", "ioid", "subscriptionid")):
                    assert event.pv == pv, c["command"]
                if event.command in ("ReadNotifyResponse", "WriteNotifyResponse"):
                    assert 0 <= event.latency < 5
        assert circuits[conn["client"]].close() == []   # nothing left half-received


def test_capture_datagrams_give_the_ground_truth_searches() -> None:
    by_client: dict[str, ChannelAccessDecoder] = defaultdict(ChannelAccessDecoder)
    sent: dict[str, list[CAEvent]] = defaultdict(list)
    received: dict[str, list[CAEvent]] = defaultdict(list)
    for p in l4_payloads(PCAP):
        if p.transport != "udp":
            continue
        side = C2S if p.dst == SERVER else S2C
        client, sender = (p.src, p.src) if side is C2S else (p.dst, p.src)
        host, port = sender.rsplit(":", 1)
        got = by_client[client].datagram(side, p.data, p.time, sender=(host, int(port)))
        (sent if side is C2S else received)[client].extend(got)
    for search in truth()["udp_searches"]:
        client = search["client"]
        assert [(e.command, e.fields.get("name")) for e in sent[client]] == [
            (c["command"], c.get("name")) for c in search["request"]]
        want = [c for r in search["responses"] for c in r["commands"]]
        assert commands(received[client]) == [c["command"] for c in want]
        for event, c in zip(received[client], want):
            assert all(event.fields[k] == v for k, v in c.items()
                       if k not in ("command", "command_id"))
        name = next(c["name"] for c in search["request"] if c["command"] == "SearchRequest")
        (reply,) = [e for e in received[client] if e.command == "SearchResponse"]
        assert reply.pv == name and reply.latency is not None and reply.latency >= 0


# -- framing, on messages made by caproto ----------------------------------------------------


def client_stream() -> list[caproto.Message]:
    return [
        caproto.VersionRequest(priority=0, version=13),
        caproto.HostNameRequest("host"),
        caproto.ClientNameRequest("user"),
        caproto.CreateChanRequest(name="oven:temp", cid=7, version=13),
        caproto.ReadNotifyRequest(data_type=ChannelType.DOUBLE, data_count=0, sid=42, ioid=3),
        caproto.EventAddRequest(data_type=ChannelType.TIME_DOUBLE, data_count=0, sid=42,
                                subscriptionid=9, low=0.0, high=0.0, to=0.0, mask=1),
        caproto.WriteNotifyRequest(data=[1.0, 2.0], data_type=ChannelType.DOUBLE,
                                   data_count=2, sid=42, ioid=4),
    ]


def server_stream() -> list[caproto.Message]:
    return [
        caproto.VersionResponse(version=13),
        caproto.AccessRightsResponse(cid=7, access_rights=3),
        caproto.CreateChanResponse(data_type=ChannelType.DOUBLE, data_count=2, cid=7, sid=42),
        caproto.ReadNotifyResponse(data=[1.5, 2.5], data_type=ChannelType.DOUBLE,
                                   data_count=2, status=1, ioid=3),
        caproto.EventAddResponse(data=[1.5, 2.5], data_type=ChannelType.DOUBLE, data_count=2,
                                 status=1, subscriptionid=9),
        caproto.WriteNotifyResponse(data_type=ChannelType.DOUBLE, data_count=2, status=1,
                                    ioid=4),
    ]


def as_bytes(messages: list[caproto.Message]) -> bytes:
    return b"".join(bytes(m) for m in messages)


def feed_in_chunks(decoder: ChannelAccessDecoder, direction: Side, data: bytes,
                   sizes: list[int], timestamp: float) -> list:
    events, pos, i = [], 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        events += decoder.feed(direction, data[pos:pos + size], timestamp)
        pos += size
        i += 1
    return events


@pytest.mark.parametrize("sizes", [[], [1], [3, 17, 5], [16], [40, 1, 1]])
def test_decoder_split_and_batched_messages(sizes):
    decoder = ChannelAccessDecoder()
    # handshake both ways first, then the operations (each side batched or split)
    c = feed_in_chunks(decoder, C2S, as_bytes(client_stream()[:4]), sizes, 99.0)
    s = feed_in_chunks(decoder, S2C, as_bytes(server_stream()[:3]), sizes, 99.5)
    c += feed_in_chunks(decoder, C2S, as_bytes(client_stream()[4:]), sizes, 100.0)
    s += feed_in_chunks(decoder, S2C, as_bytes(server_stream()[3:]), sizes, 100.25)
    assert [e.command for e in c] == [type(m).__name__ for m in client_stream()]
    assert [e.command for e in s] == [type(m).__name__ for m in server_stream()]
    assert all(e.error is None for e in c + s)
    pvs = {e.command: e.pv for e in c + s}
    for name in ("ReadNotifyRequest", "ReadNotifyResponse", "EventAddResponse",
                 "AccessRightsResponse", "CreateChanResponse", "WriteNotifyResponse"):
        assert pvs[name] == "oven:temp", name
    read = next(e for e in s if e.command == "ReadNotifyResponse")
    assert read.fields["data"] == [1.5, 2.5] and read.latency == pytest.approx(0.25)
    write = next(e for e in c if e.command == "WriteNotifyRequest")
    assert write.fields["data"] == [1.0, 2.0]
    assert list(decoder.subscriptions.items()) == [(9, "oven:temp")]


def test_decoder_clear_and_cancel_forget_the_channel():
    decoder = ChannelAccessDecoder()
    decoder.feed(C2S, as_bytes(client_stream()[:4]))
    decoder.feed(S2C, as_bytes(server_stream()[:3]))
    decoder.feed(C2S, as_bytes(client_stream()[4:6]))
    assert decoder.subscriptions == {9: "oven:temp"}
    decoder.feed(C2S, bytes(caproto.EventCancelRequest(ChannelType.TIME_DOUBLE, 42, 9)))
    # on the wire the acknowledgement is an empty EventAddResponse (command 1)
    (ev,) = decoder.feed(S2C, bytes(caproto.EventCancelResponse(ChannelType.TIME_DOUBLE,
                                                                 42, 9, 0)))
    assert ev.command == "EventCancelResponse" and ev.fields["sid"] == 42
    assert ev.pv == "oven:temp" and not decoder.subscriptions
    decoder.feed(C2S, bytes(caproto.ClearChannelRequest(sid=42, cid=7)))
    (ev,) = decoder.feed(S2C, bytes(caproto.ClearChannelResponse(sid=42, cid=7)))
    assert ev.pv == "oven:temp" and not decoder.sids and not decoder.cids


def test_decoder_oversized_message_is_skipped_with_bounded_memory():
    decoder = ChannelAccessDecoder(max_message_bytes=1024)
    huge = caproto.WriteNotifyRequest(data=list(range(1000)), data_type=ChannelType.LONG,
                                      data_count=1000, sid=1, ioid=1)
    raw = bytes(huge)
    assert len(raw) > 4000  # extended header not needed, but over the 1 KiB limit
    events = []
    for i in range(0, len(raw), 100):
        events += decoder.feed(C2S, raw[i:i + 100])
        assert len(decoder._dirs[C2S].buffer) <= 1024 + 24
    (err,) = events
    assert err.command == "error" and "over the 1024-byte limit" in err.error
    assert err.fields["name"] == "WriteNotifyRequest"
    assert err.fields["payload_size"] == len(raw) - 16
    # framing survived: the next message decodes
    (echo,) = decoder.feed(C2S, bytes(caproto.EchoRequest()))
    assert echo.command == "EchoRequest" and echo.error is None


def test_decoder_extended_header_claiming_gigabytes():
    decoder = ChannelAccessDecoder()
    # extended header: payload_size 0xFFFF and data_count 0 announce 32-bit size and count
    header = (b"\x00\x13\xff\xff\x00\x05\x00\x00" + b"\x00\x00\x00\x01\x00\x00\x00\x01"
              + (0xFFFF_FFF0).to_bytes(4, "big") + (0x4000_0000).to_bytes(4, "big"))
    (err,) = decoder.feed(C2S, header + b"\0" * 5000)
    assert "over the" in err.error and err.fields["payload_size"] == 0xFFFF_FFF0
    assert decoder._dirs[C2S].skip == 0xFFFF_FFF0 - 5000
    assert not decoder._dirs[C2S].buffer
    (trunc,) = decoder.close()
    assert trunc.error == "circuit ended inside a message"


def test_decoder_lying_string_count_is_cheap():
    """A STRING response claiming 2**32-1 items in a 40-byte payload must not make caproto
    build four billion empty strings."""
    msg = bytearray(bytes(caproto.ReadNotifyResponse(data=[b"ok"], data_type=ChannelType.STRING,
                                                     data_count=1, status=1, ioid=1)))
    extended = (msg[:2] + b"\xff\xff" + msg[4:6] + b"\x00\x00" + msg[8:16]
                + (len(msg) - 16).to_bytes(4, "big") + (0xFFFF_FFFF).to_bytes(4, "big")
                + msg[16:])
    started = time.monotonic()
    (ev,) = ChannelAccessDecoder().feed(S2C, bytes(extended))
    assert time.monotonic() - started < 1
    assert ev.fields["data"] == ["ok"] and ev.fields["data_truncated"] is True
    assert ev.fields["data_count"] == 0xFFFF_FFFF


def test_decoder_caps_data_arrays():
    msg = caproto.ReadNotifyResponse(data=list(range(500)), data_type=ChannelType.LONG,
                                     data_count=500, status=1, ioid=1)
    (ev,) = ChannelAccessDecoder(max_data_items=10).feed(S2C, bytes(msg))
    assert ev.fields["data"] == list(range(10))
    assert ev.fields["data_items"] == 500 and ev.fields["data_truncated"] is True


def test_decoder_garbage_stops_one_direction_cleanly():
    decoder = ChannelAccessDecoder()
    junk = b"\x7f\x7f\x00\x00" + b"\x00" * 12  # unknown command id, no payload
    events = decoder.feed(C2S, junk * 5 + bytes(caproto.EchoRequest()))
    assert [e.command for e in events] == ["error"] * 4
    assert events[-1].error.startswith("decoding stopped")
    assert decoder.stopped(C2S) and not decoder.stopped(S2C)
    assert decoder.feed(C2S, bytes(caproto.EchoRequest())) == []
    (ok,) = decoder.feed(S2C, bytes(caproto.VersionResponse(13)))
    assert ok.command == "VersionResponse"


def test_decoder_gap_resyncs_at_the_next_whole_messages_chunk():
    decoder = ChannelAccessDecoder()
    decoder.feed(S2C, bytes(caproto.VersionResponse(13))[:10])
    (ev,) = decoder.gap(S2C, 1460)
    assert "1460 bytes lost" in ev.error and "10 bytes of the message in progress" in ev.error
    assert ev.fields == {"missing": 1460} and not decoder.stopped(S2C)
    assert decoder.close() == []  # the half-received message was dropped at the gap
    # a chunk starting inside a message is skipped; whole messages resume decoding
    create = bytes(caproto.CreateChanResponse(data_type=ChannelType.DOUBLE, data_count=1,
                                              cid=1, sid=7))
    assert decoder.feed(S2C, create[4:]) == []
    events = decoder.feed(S2C, bytes(caproto.VersionResponse(13)) + create)
    assert [e.command for e in events] == ["resynced", "VersionResponse", "CreateChanResponse"]
    assert events[0].fields == {"missing": 1460, "skipped": len(create) - 4}
    assert "RESYNCED at a message boundary after 1460 missing bytes" in \
        describe_event(events[0])
    (echo,) = decoder.feed(S2C, bytes(caproto.EchoResponse()))
    assert echo.command == "EchoResponse"
    # the other direction never noticed
    (req,) = decoder.feed(C2S, bytes(caproto.EchoRequest()))
    assert req.command == "EchoRequest"


def test_decoder_gap_inside_a_skipped_oversized_message_loses_nothing_else():
    decoder = ChannelAccessDecoder(max_message_bytes=64)
    big = bytes(caproto.WriteNotifyRequest(data=[1.0] * 100, data_type=ChannelType.DOUBLE,
                                           data_count=100, sid=1, ioid=2))
    (oversized,) = decoder.feed(C2S, big[:100])
    assert "over the 64-byte limit" in oversized.error
    assert decoder.gap(C2S, 300) == []          # bytes the decoder was skipping anyway
    (echo,) = decoder.feed(C2S, big[400:] + bytes(caproto.EchoRequest()))
    assert echo.command == "EchoRequest"


def test_decoder_gap_gives_up_without_a_boundary():
    decoder = ChannelAccessDecoder()
    decoder.gap(C2S, 100)
    events = []
    for _ in range(RESYNC_TRIES + 3):
        events += decoder.feed(C2S, b"\x00\x01 no CA message starts here")
    (stop,) = events
    assert stop.error.startswith("decoding stopped: no message boundary in the 64 chunks")
    assert decoder.stopped(C2S)
    assert decoder.feed(C2S, bytes(caproto.EchoRequest())) == []


def test_decoder_datagrams_beacons_and_repeater():
    decoder = ChannelAccessDecoder()
    # a beacon goes *to* the repeater port: server-role message, client-to-server flow
    (beacon,) = decoder.datagram(C2S, bytes(caproto.Beacon(13, 5064, 7, "127.0.0.1")),
                                 sender=("127.0.0.1", 40000))
    assert beacon.command == "Beacon"
    assert beacon.fields == {"version": 13, "server_port": 5064, "beacon_id": 7,
                             "address": "127.0.0.1"}
    (reg,) = decoder.datagram(C2S, bytes(caproto.RepeaterRegisterRequest("127.0.0.1")))
    (conf,) = decoder.datagram(S2C, bytes(caproto.RepeaterConfirmResponse("127.0.0.1")))
    assert reg.command == "RepeaterRegisterRequest" and conf.command == "RepeaterConfirmResponse"
    events = decoder.datagram(C2S, bytes(caproto.VersionRequest(0, 13))
                              + bytes(caproto.SearchRequest("a:b", 5, 13, 10))[:-3])
    assert [e.command for e in events] == ["VersionRequest", "error"]
    assert events[1].error == "datagram ends inside a message"


def test_detect_version_header():
    assert looks_like_version_header(bytes(caproto.VersionRequest(priority=0, version=13)))
    assert looks_like_version_header(bytes(caproto.VersionResponse(version=13)))
    assert not looks_like_version_header(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not looks_like_version_header(b"\0" * 16)
    assert not looks_like_version_header(bytes(caproto.EchoRequest()))
    assert not looks_like_version_header(b"\0\0\0\0")


def test_side_by_value_and_a_wrong_side_refused() -> None:
    decoder = ChannelAccessDecoder()
    (event,) = decoder.feed("client_to_server", bytes(caproto.EchoRequest()), 1.0)
    assert event.direction is C2S and str(event.direction) == "client_to_server"
    with pytest.raises(ValueError, match="not a side"):
        decoder.feed("sideways", bytes(caproto.EchoRequest()))


# -- hostile bytes ---------------------------------------------------------------------------


def test_truncated_message_is_reported_when_the_circuit_ends() -> None:
    decoder = ChannelAccessDecoder()
    create = bytes(caproto.CreateChanRequest(name="oven:temp", cid=7, version=13))
    assert decoder.feed(C2S, create[:-5], 1.0) == []    # waits for the rest
    (error,) = decoder.close(2.0)
    assert error.command == "error" and "ended inside a message" in error.error
    assert error.fields["bytes"] == len(create) - 5
    assert error.fields["hex"] == create[:-5][:48].hex()   # what arrived, up to 48 bytes


def test_old_read_response_decodes_without_warnings():
    with pytest.warns(UserWarning):  # caproto warns when *building* one
        msg = caproto.ReadResponse(data=[7], data_type=ChannelType.LONG, data_count=1,
                                   sid=1, ioid=2)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (ev,) = ChannelAccessDecoder().feed(S2C, bytes(msg))
    assert ev.command == "ReadResponse" and ev.fields["data"] == [7]


# -- the boundary ---------------------------------------------------------------------------


