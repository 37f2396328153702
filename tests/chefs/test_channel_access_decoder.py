"""The Channel Access decoder on its own, as h11 is used: bytes in, events out.

No kitchen, no chef, no flows, no scapy: the bytes are the real ones of the shared capture
(read with the capture reader only, each circuit's segments fed in capture order) or made
by caproto, the side is the decoder's own ``Side``, and hostile bytes (truncated, lying
lengths and counts, garbage, gaps) must come back as events, never as exceptions. The last
test holds the decoder's modules to their import boundary.
"""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from pathlib import Path

import caproto
import pytest
from caproto import ChannelType

from netdumplings.chefs.channel_access import CAEvent, ChannelAccessDecoder, Side
from netdumplings.chefs.channel_access import decoder as decoder_module

from conftest import DATA, l4_payloads, sans_io_violations

PCAP = DATA / "epics-ca.pcap"
C, S = Side.CLIENT_TO_SERVER, Side.SERVER_TO_CLIENT
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
        side = C if p.dst == SERVER else S
        client = p.src if side is C else p.dst
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
        side = C if p.dst == SERVER else S
        client, sender = (p.src, p.src) if side is C else (p.dst, p.src)
        host, port = sender.rsplit(":", 1)
        got = by_client[client].datagram(side, p.data, p.time, sender=(host, int(port)))
        (sent if side is C else received)[client].extend(got)
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


# -- messages made by caproto ---------------------------------------------------------------


def open_channel(decoder: ChannelAccessDecoder) -> None:
    decoder.feed(C, bytes(caproto.VersionRequest(priority=0, version=13))
                 + bytes(caproto.CreateChanRequest(name="oven:temp", cid=7, version=13)), 1.0)
    decoder.feed(S, bytes(caproto.VersionResponse(version=13))
                 + bytes(caproto.CreateChanResponse(data_type=ChannelType.DOUBLE,
                                                    data_count=1, cid=7, sid=42)), 1.1)


def test_monitor_lifecycle_names_its_pv_until_cancelled() -> None:
    decoder = ChannelAccessDecoder()
    open_channel(decoder)
    (add,) = decoder.feed(C, bytes(caproto.EventAddRequest(
        data_type=ChannelType.DOUBLE, data_count=0, sid=42, subscriptionid=9, low=0.0,
        high=0.0, to=0.0, mask=1)), 2.0)
    (update,) = decoder.feed(S, bytes(caproto.EventAddResponse(
        data=[21.5], data_type=ChannelType.DOUBLE, data_count=1, status=1,
        subscriptionid=9)), 2.1)
    assert add.pv == update.pv == "oven:temp" and update.fields["data"] == [21.5]
    assert dict(decoder.subscriptions) == {9: "oven:temp"}
    decoder.feed(C, bytes(caproto.EventCancelRequest(ChannelType.DOUBLE, 42, 9)), 3.0)
    # the wire's acknowledgement is an empty EventAddResponse: shown as the cancel's
    (ack,) = decoder.feed(S, bytes(caproto.EventCancelResponse(ChannelType.DOUBLE, 42, 9, 0)),
                          3.1)
    assert ack.command == "EventCancelResponse" and ack.fields["sid"] == 42
    assert ack.pv == "oven:temp" and not decoder.subscriptions


def test_side_by_value_and_a_wrong_side_refused() -> None:
    decoder = ChannelAccessDecoder()
    (event,) = decoder.feed("client_to_server", bytes(caproto.EchoRequest()), 1.0)
    assert event.direction is C and str(event.direction) == "client_to_server"
    with pytest.raises(ValueError, match="not a side"):
        decoder.feed("sideways", bytes(caproto.EchoRequest()))


# -- hostile bytes ---------------------------------------------------------------------------


def test_truncated_message_is_reported_when_the_circuit_ends() -> None:
    decoder = ChannelAccessDecoder()
    create = bytes(caproto.CreateChanRequest(name="oven:temp", cid=7, version=13))
    assert decoder.feed(C, create[:-5], 1.0) == []    # waits for the rest
    (error,) = decoder.close(2.0)
    assert error.command == "error" and "ended inside a message" in error.error
    assert error.fields["bytes"] == len(create) - 5
    assert error.fields["hex"] == create[:-5][:48].hex()   # what arrived, up to 48 bytes


def test_lying_payload_size_is_skipped_not_buffered() -> None:
    decoder = ChannelAccessDecoder(max_message_bytes=4096)
    # an extended header announcing 16 MB of payload, then only 100 bytes of it
    lying = struct.pack(">HHHHII", 1, 0xFFFF, 0, 0, 0, 0) + struct.pack(">II", 1 << 24, 1)
    (error,) = decoder.feed(C, lying + b"\0" * 100, 1.0)
    assert "over the 4096-byte limit" in error.error and error.command_id == 1
    assert not decoder._dirs[C].buffer and decoder._dirs[C].skip == (1 << 24) - 100


def test_lying_data_count_is_clamped_to_what_the_payload_holds() -> None:
    decoder = ChannelAccessDecoder()
    msg = bytearray(bytes(caproto.ReadNotifyResponse(
        data=[1.5, 2.5], data_type=ChannelType.DOUBLE, data_count=2, status=1, ioid=3)))
    msg[6:8] = (1000).to_bytes(2, "big")      # claims 1000 doubles, carries 2
    (event,) = decoder.feed(S, bytes(msg), 1.0)
    assert event.error is None and event.fields["data"] == [1.5, 2.5]
    assert event.fields["data_truncated"] and event.fields["data_items"] == 2


def test_garbage_stops_one_side_and_leaves_the_other() -> None:
    decoder = ChannelAccessDecoder()
    junk = struct.pack(">HHHHII", 0x7777, 0, 0, 0, 0, 0)   # no such command
    events = decoder.feed(C, junk * 5, 1.0)
    assert commands(events) == ["error"] * 4 and "decoding stopped" in events[-1].error
    assert decoder.stopped(C) and decoder.feed(C, bytes(caproto.EchoRequest())) == []
    (ok,) = decoder.feed(S, bytes(caproto.VersionResponse(13)))
    assert ok.command == "VersionResponse" and not decoder.stopped(S)


def test_datagram_ending_inside_a_message() -> None:
    search = bytes(caproto.SearchRequest(name="oven:temp", cid=1, version=13))
    events = ChannelAccessDecoder().datagram(C, search + search[:10], 1.0,
                                             sender=("127.0.0.1", 5555))
    assert commands(events) == ["SearchRequest", "error"]
    assert "datagram ends inside a message" in events[1].error


def test_gap_then_resync_at_the_next_whole_segment() -> None:
    decoder = ChannelAccessDecoder()
    open_channel(decoder)
    (gap,) = decoder.gap(C, 1460, 2.0)
    assert gap.command == "error" and gap.fields == {"missing": 1460}
    assert decoder.feed(C, b"\x01\x02\x03", 2.1) == []      # the middle of something
    read = bytes(caproto.ReadNotifyRequest(data_type=ChannelType.DOUBLE, data_count=0,
                                           sid=42, ioid=5))
    resynced, event = decoder.feed(C, read, 2.2)
    assert resynced.command == "resynced" and resynced.fields == {"missing": 1460,
                                                                  "skipped": 3}
    assert event.command == "ReadNotifyRequest" and event.pv == "oven:temp"


# -- the boundary ---------------------------------------------------------------------------


def test_decoder_imports_stay_inside_its_boundary() -> None:
    """decoder.py and the package modules it imports use only the stdlib, caproto and each
    other: no framework, no scapy, sockets or event loops."""
    decoder_py = Path(decoder_module.__file__)
    package = "netdumplings.chefs.channel_access"
    assert sans_io_violations(decoder_py, package) == []
    assert sans_io_violations(decoder_py.with_name("describe.py"), package) == []
    # the check does see imports: the chef shell, which may use the framework, is flagged
    assert any("netdumplings.chef" in v
               for v in sans_io_violations(decoder_py.with_name("chef.py"), package))
