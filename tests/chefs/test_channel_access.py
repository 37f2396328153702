"""ChannelAccessChef and ChannelAccessDecoder: the shared CA capture against its ground
truth, framing edge cases (split, batched, oversized, garbage, gaps), a live caproto IOC
with caproto's own clients on loopback, and fuzzing."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from pathlib import Path

import caproto
import pytest
from caproto import ChannelType
from hypothesis import HealthCheck, given, settings, strategies as st

from netdumplings.chef import CloseReason, Direction, iter_payloads
from netdumplings.chefs.channel_access import (RESYNC_TRIES, ChannelAccessChef,
                                               ChannelAccessDecoder, describe_event,
                                               looks_like_version_header)
from netdumplings.flows import Flow
from netdumplings.offline import read_dumplings

from conftest import DATA

PCAP = DATA / "epics-ca.pcap"
C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
NOTIFY_RESPONSES = {"ReadNotifyResponse", "WriteNotifyResponse"}


def expected() -> dict:
    return json.loads((DATA / "epics-ca.expected.json").read_text())


@pytest.fixture(scope="module")
def capture_run() -> tuple[list[dict], list[dict]]:
    """(command payloads, interval payloads) of ChannelAccessChef over the shared capture."""
    commands, intervals = [], []
    for d in read_dumplings(PCAP, [ChannelAccessChef]):
        assert d["metadata"]["chef"] == "ChannelAccessChef"
        (intervals if d["metadata"]["driver"] == "interval" else commands).append(d["payload"])
    return commands, intervals


def by_client(payloads: list[dict], transport: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for p in payloads:
        if p["transport"] == transport:
            out[p["flow"]["client"]].append(p)
    return out


# -- the shared capture -------------------------------------------------------------------


def test_capture_tcp_circuits_match_ground_truth(capture_run):
    commands, _ = capture_run
    truth = expected()
    circuits = by_client(commands, "tcp")
    assert len(circuits) == truth["counts"]["tcp_circuits"] == len(truth["connections"])
    for conn in truth["connections"]:
        got = circuits[conn["client"]]
        assert all(p["flow"]["server"] == conn["server"] for p in got)
        # Every command of each direction, in order, with every ground-truth field. Across
        # directions the ground truth's interleaving is not always the wire's (in some
        # circuits it lists CreateChanRequest before a VersionResponse that was captured
        # earlier); the dumplings follow capture time.
        assert [p["timestamp"] for p in got] == sorted(p["timestamp"] for p in got)
        pv = next(c["name"] for c in conn["commands"] if c["command"] == "CreateChanRequest")
        pairs = []
        for direction in ("client_to_server", "server_to_client"):
            mine = [p for p in got if p["direction"] == direction]
            truth_dir = [c for c in conn["commands"] if c["dir"] == direction]
            assert [p["command"] for p in mine] == [c["command"] for c in truth_dir]
            pairs += zip(mine, truth_dir)
        for p, c in pairs:
            assert p["command_id"] == c["command_id"]
            for key, value in c.items():
                if key not in ("dir", "command", "command_id"):
                    assert p["fields"][key] == value, (conn["client"], c["command"], key)
            assert "error" not in p
            # every command about the channel names its PV, responses included
            if any(k in c for k in ("cid", "sid", "ioid", "subscriptionid")):
                assert p["pv"] == pv, (conn["client"], c["command"])
            if p["command"] in NOTIFY_RESPONSES:
                assert 0 <= p["latency"] < 5
            src, dst = ((conn["client"], conn["server"]) if c["dir"] == "client_to_server"
                        else (conn["server"], conn["client"]))
            assert (p["src"], p["dst"]) == (src, dst)
            assert p["summary"].startswith(f"{src} -> {dst}  {c['command']}(")


def test_capture_command_counts(capture_run):
    commands, _ = capture_run
    counts = expected()["counts"]
    tcp = [p for p in commands if p["transport"] == "tcp"]
    assert sum(p["direction"] == "client_to_server" for p in tcp) == \
        counts["commands_client_to_server"]
    assert sum(p["direction"] == "server_to_client" for p in tcp) == \
        counts["commands_server_to_client"]
    assert not [p for p in commands if p["command"] == "error"]


def test_capture_udp_searches(capture_run):
    commands, _ = capture_run
    truth = expected()
    flows = by_client(commands, "udp")
    assert len(truth["udp_searches"]) == truth["counts"]["udp_searches"]
    for search in truth["udp_searches"]:
        got = flows[search["client"]]
        requests = [p for p in got if p["direction"] == "client_to_server"]
        assert [p["command"] for p in requests] == [c["command"] for c in search["request"]]
        for p, c in zip(requests, search["request"]):
            assert p["dst"] == search["server"]
            assert all(p["fields"][k] == v for k, v in c.items()
                       if k not in ("command", "command_id"))
        name = next(c["name"] for c in search["request"] if c["command"] == "SearchRequest")
        responses = [p for p in got if p["direction"] == "server_to_client"]
        want = [(r["from"], c) for r in search["responses"] for c in r["commands"]]
        assert len(responses) == len(want)
        for p, (sender, c) in zip(responses, want):
            assert p["src"] == sender and p["command"] == c["command"]
            assert all(p["fields"][k] == v for k, v in c.items()
                       if k not in ("command", "command_id"))
            if c["command"] == "SearchResponse":
                assert p["pv"] == name
                assert p["latency"] >= 0
                # 255.255.255.255 in the reply means "the address this came from"
                host = sender.rsplit(":", 1)[0]
                assert p["fields"]["ip"] == c["ip"]
                assert p["server_address"] == f"{host}:{c['port']}"


def test_capture_operations_and_monitor(capture_run):
    commands, _ = capture_run
    truth = expected()
    ops = [p for p in commands if p["command"] in NOTIFY_RESPONSES]
    assert len(ops) == len(truth["operations"])
    requests = {(p["flow"]["id"]): p for p in commands if p["command"] == "WriteNotifyRequest"}
    for p, op in zip(ops, truth["operations"]):
        assert p["pv"] == op["pv"]
        if op["op"] == "read":
            assert p["command"] == "ReadNotifyResponse"
            assert p["fields"]["data"] == op["value"]
            assert p["fields"]["data_type"] == op["data_type"]
            assert p["fields"]["metadata"] == op["metadata"]
        else:
            assert p["command"] == "WriteNotifyResponse"
            assert p["fields"]["status"] == op["status"]
            assert requests[p["flow"]["id"]]["fields"]["data"] == op["value"]
    updates = [p for p in commands if p["command"] == "EventAddResponse"]
    assert [p["fields"]["data"] for p in updates] == truth["monitor"]["updates"]
    assert {p["pv"] for p in updates} == {truth["monitor"]["pv"]}


def test_capture_summary_line_is_caproto_shark_like(capture_run):
    commands, _ = capture_run
    search = next(p for p in commands if p["command"] == "SearchRequest")
    f = search["fields"]
    assert search["summary"] == (f"{search['src']} -> {search['dst']}  SearchRequest("
                                 f"name={f['name']!r}, cid={f['cid']}, version={f['version']}, "
                                 f"reply={f['reply']})")
    read = next(p for p in commands if p["command"] == "ReadNotifyResponse")
    assert re.search(r"ReadNotifyResponse\(data=\[.*\], data_type=\w+, data_count=\d+, "
                     r"status=ECA_NORMAL, ioid=\d+\) pv=\S+ in [\d.]+ ms$", read["summary"])
    for p in commands:
        assert "\n" not in p["summary"] and len(p["summary"]) < 500
        # what nd-sniff --format '{timestamp} {src}->{dst} {payload[command]}' needs
        assert isinstance(p["timestamp"], float) and p["src"] and p["dst"] and p["command"]


def test_capture_interval_summary(capture_run):
    _, intervals = capture_run
    truth = expected()
    assert intervals, "the final poke at end of file gives a summary"
    last = intervals[-1]
    assert sorted(last["pvs_seen"]) == sorted(pv["name"] for pv in truth["pvs"])
    assert last["pv_count"] == len(truth["pvs"])
    assert last["search_requests"] == truth["counts"]["udp_searches"]
    assert last["search_responses"] == truth["counts"]["udp_searches"]
    assert sum(last["searches_by_pv"].values()) == truth["counts"]["udp_searches"]
    # at end of file every circuit was closed, so nothing is open any more
    assert last["circuits_open"] == 0 and last["monitors_active"] == 0
    assert last["errors"] == 0


def test_capture_through_file_object_gives_same_dumplings(capture_run):
    commands, _ = capture_run
    with open(PCAP, "rb") as fh:
        again = [d["payload"] for d in read_dumplings(fh, [ChannelAccessChef])
                 if d["metadata"]["driver"] != "interval"]
    assert [p["summary"] for p in again] == [p["summary"] for p in commands]


# -- decoder: framing ------------------------------------------------------------------


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


def feed_in_chunks(decoder: ChannelAccessDecoder, direction: Direction, data: bytes,
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


def test_capture_joined_mid_circuit_decodes_from_the_first_whole_segment(tmp_path):
    """A capture that begins while a circuit is open (the usual case for CA, whose circuits
    live for days): each direction starts at its first segment of whole messages, says
    ``joined``, and decodes everything from there as the full capture does."""
    from scapy.all import TCP, Raw, rdpcap, wrpcap

    packets = rdpcap(str(PCAP))
    read_id = caproto.ReadNotifyRequest.ID
    start = next(i for i, p in enumerate(packets)
                 if TCP in p and Raw in p and p[TCP].dport == 5064
                 and int.from_bytes(bytes(p[Raw])[:2], "big") == read_id)
    client = f"{packets[start]['IP'].src}:{packets[start][TCP].sport}"
    # start one packet into the read, mid-message, so the first chunk must be skipped
    first = packets[start]
    cut_raw = bytes(first[Raw])[4:]
    first[Raw].load = cut_raw
    first[TCP].seq += 4                    # the capture simply starts 4 bytes later
    del first["IP"].len, first["IP"].chksum, first[TCP].chksum
    rebuilt = first.__class__(bytes(first))
    rebuilt.time = first.time
    cut = tmp_path / "joined.pcap"
    wrpcap(str(cut), [rebuilt] + list(packets[start + 1:]))
    got = [d["payload"] for d in read_dumplings(str(cut), [ChannelAccessChef])
           if d["metadata"]["driver"] != "interval"]
    full = [d["payload"] for d in read_dumplings(PCAP, [ChannelAccessChef])
            if d["metadata"]["driver"] != "interval"]
    mine = by_client(got, "tcp")[client]
    want = by_client(full, "tcp")[client]
    for direction in ("client_to_server", "server_to_client"):
        m = [p for p in mine if p["direction"] == direction]
        w = [p for p in want if p["direction"] == direction]
        assert m[0]["command"] == "joined", m[:2]
        rest = [p["command"] for p in m[1:]]
        assert rest and rest == [p["command"] for p in w[len(w) - len(rest):]]
        for p, q in zip(m[1:], w[len(w) - len(rest):]):
            assert p["fields"] == q["fields"]
    c2s = [p for p in mine if p["direction"] == "client_to_server"]
    assert c2s[0]["fields"] == {"skipped": len(cut_raw)}
    assert "JOINED mid-stream at a message boundary" in c2s[0]["summary"]
    assert c2s[1]["command"] != "ReadNotifyRequest"      # the cut request was skipped
    assert not [p for p in mine if "error" in p]


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


def test_capture_with_a_lost_segment_resumes_after_it(tmp_path):
    """The real capture with one server segment (a ReadNotifyResponse) removed: the chef
    reports the gap, resyncs at the next segment, and decodes everything after it (PV
    names included, from the circuit's history) as in the full capture."""
    from scapy.all import TCP, Raw, rdpcap, wrpcap

    packets = rdpcap(str(PCAP))
    read_id = caproto.ReadNotifyResponse.ID
    index = next(i for i, p in enumerate(packets)
                 if TCP in p and Raw in p and p[TCP].sport == 5064
                 and int.from_bytes(bytes(p[Raw])[:2], "big") == read_id)
    lost = packets[index]
    client = f"{lost['IP'].dst}:{lost[TCP].dport}"
    assert len(bytes(lost[Raw])) == 16 + int.from_bytes(bytes(lost[Raw])[2:4], "big")
    cut = tmp_path / "lost.pcap"
    wrpcap(str(cut), packets[:index] + packets[index + 1:])
    got = [d["payload"] for d in read_dumplings(str(cut), [ChannelAccessChef])
           if d["metadata"]["driver"] != "interval"]
    full = [d["payload"] for d in read_dumplings(PCAP, [ChannelAccessChef])
            if d["metadata"]["driver"] != "interval"]
    mine = [p for p in by_client(got, "tcp")[client] if p["direction"] == "server_to_client"]
    want = [p for p in by_client(full, "tcp")[client] if p["direction"] == "server_to_client"]
    at = next(i for i, p in enumerate(want) if p["command"] == "ReadNotifyResponse")
    assert [p["command"] for p in mine] == \
        [p["command"] for p in want[:at]] + ["error", "resynced"] + \
        [p["command"] for p in want[at + 1:]]
    assert "bytes lost in capture" in mine[at]["error"]
    assert mine[at + 1]["fields"] == {"missing": len(bytes(lost[Raw])), "skipped": 0}
    for p, w in zip(mine[at + 2:], want[at + 1:]):
        assert (p["fields"], p["pv"]) == (w["fields"], w["pv"])
    # every other circuit and direction is untouched
    def key(ps):
        return [(p["flow"]["client"], p["direction"], p["command"], p["pv"]) for p in ps
                if not (p["flow"]["client"] == client and p["direction"] == "server_to_client")]
    assert key(got) == key(full)


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


# -- the chef shell, without a kitchen --------------------------------------------------


def tcp_flow(flow_id: int = 1) -> Flow:
    return Flow(flow_id, "tcp", ("127.0.0.1", 40001), ("127.0.0.1", 5064), 0.0, True)


def test_chef_payload_shape_and_interval():
    chef = ChannelAccessChef()
    flow = tcp_flow()
    payloads = []
    for direction, data, ts in ((C2S, as_bytes(client_stream()[:4]), 10.0),
                                (S2C, as_bytes(server_stream()[:3]), 10.1),
                                (C2S, as_bytes(client_stream()[4:]), 10.2),
                                (S2C, as_bytes(server_stream()[3:]), 10.5)):
        payloads += list(iter_payloads(chef.on_data(flow, direction, data, ts)))
    assert len(payloads) == len(client_stream()) + len(server_stream())
    read = next(p for p in payloads if p["command"] == "ReadNotifyResponse")
    assert read["pv"] == "oven:temp" and read["latency"] == pytest.approx(0.3)
    for p in payloads:
        json.dumps(p, allow_nan=False)
        assert {"flow", "src", "dst", "direction", "timestamp", "summary", "command",
                "fields", "pv"} <= set(p)
    stats = chef.interval_handler()
    assert stats["circuits_open"] == 1 and stats["monitors_active"] == 1
    assert stats["monitors"] == [{"circuit": 1, "subscriptionid": 9, "pv": "oven:temp"}]
    closing = list(iter_payloads(chef.on_close(flow, CloseReason.FIN)))
    assert closing == []
    assert chef.interval_handler()["circuits_open"] == 0


def test_chef_reports_truncated_circuit_on_close():
    chef = ChannelAccessChef()
    flow = tcp_flow()
    list(iter_payloads(chef.on_data(flow, C2S, as_bytes(client_stream())[:-5], 1.0)))
    (p,) = list(iter_payloads(chef.on_close(flow, CloseReason.END)))
    assert p["command"] == "error" and "inside a message" in p["error"]
    assert p["fields"]["bytes"] > 0


# -- fuzzing ----------------------------------------------------------------------------

VALID = as_bytes(client_stream()), as_bytes(server_stream())


@st.composite
def mutated_streams(draw):
    which = draw(st.sampled_from([0, 1]))
    data = bytearray(VALID[which])
    for _ in range(draw(st.integers(0, 8))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data += draw(st.binary(max_size=200))
    return (C2S, S2C)[which], bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.one_of(mutated_streams(),
                        st.tuples(st.sampled_from([C2S, S2C]), st.binary(max_size=600))),
       cuts=st.lists(st.integers(1, 64), min_size=1, max_size=8),
       transport=st.sampled_from(["tcp", "udp"]))
def test_fuzz_chef_never_raises(stream, cuts, transport):
    direction, data = stream
    chef = ChannelAccessChef(max_message_bytes=512, max_data_items=16)
    flow = Flow(1, transport, ("127.0.0.1", 40001), ("127.0.0.1", 5064), 0.0, True)
    pos, i, out = 0, 0, []
    while pos < len(data) and i < 1000:
        chunk = data[pos:pos + cuts[i % len(cuts)]]
        out += list(iter_payloads(chef.on_data(flow, direction, chunk, 1.0 + i)))
        decoder = chef.flow_state(flow)
        assert len(decoder._dirs[direction].buffer) <= 512 + 24
        pos += len(chunk)
        i += 1
    out += list(iter_payloads(chef.on_gap(flow, direction.reverse, 10)))
    out += list(iter_payloads(chef.on_close(flow, CloseReason.END)))
    for p in out:
        json.dumps(p, allow_nan=False)
        assert len(p["summary"]) < 500
        if isinstance(p["fields"].get("data"), list):
            assert len(p["fields"]["data"]) <= 16
    json.dumps(chef.interval_handler(), allow_nan=False)


# -- live: a caproto IOC and caproto's clients on loopback -------------------------------

IOC = textwrap.dedent("""
    import logging
    from caproto.server import PVGroup, pvproperty, run

    logging.basicConfig(level=logging.INFO)  # "Listening on 127.0.0.1:PORT" tells the port

    class Steamer(PVGroup):
        temp = pvproperty(value=98.5, name="temp", units="degC", precision=1)
        count = pvproperty(value=12, name="count")

    ioc = Steamer(prefix="ndtest:")
    print("READY", flush=True)
    run(ioc.pvdb, interfaces=["127.0.0.1"])
""")


def free_udp_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


@pytest.fixture
def caproto_ioc(tmp_path, monkeypatch):
    """A caproto IOC on 127.0.0.1 (subprocess) and this process's CA environment pointing
    at it; yields (udp server port, repeater port, tcp port)."""
    server_port, repeater_port = free_udp_port(), free_udp_port()
    env = {"EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CA_AUTO_ADDR_LIST": "NO",
           "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
           "EPICS_CA_SERVER_PORT": str(server_port),
           "EPICS_CA_REPEATER_PORT": str(repeater_port)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # Hold the TCP side of the server port so the IOC has to take another TCP port, as
    # caproto servers often do: that circuit is then found by detect(), not by port.
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", server_port))
    script = tmp_path / "ioc.py"
    script.write_text(IOC)
    # caproto's clients spawn a caproto-repeater that runs forever unless one is already
    # there: start it here, so it ends with the test instead of outliving the suite.
    repeater = subprocess.Popen([sys.executable, "-m", "caproto.commandline.repeater",
                                 "--quiet"], env={**os.environ, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ioc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env={**os.environ, **env})
    try:
        from caproto.sync.repeater import RepeaterAlreadyRunning, check_for_running_repeater
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and repeater.poll() is None:
            try:
                check_for_running_repeater(("0.0.0.0", repeater_port)).close()
            except RepeaterAlreadyRunning:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("caproto-repeater did not start")
        tcp_port = None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(ioc.stdout.readline, "")),
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + 20
        while tcp_port is None and time.monotonic() < deadline and ioc.poll() is None:
            for line in list(lines):
                m = re.search(r"Listening on 127\.0\.0\.1:(\d+)", line)
                if m:
                    tcp_port = int(m.group(1))
            time.sleep(0.05)
        assert tcp_port, f"IOC did not start: {''.join(lines)[-2000:]}"
        assert tcp_port != server_port
        yield server_port, repeater_port, tcp_port
    finally:
        for proc in (ioc, repeater):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        blocker.close()


@pytest.mark.live
def test_live_caproto_ioc_and_clients(live_kitchen, caproto_ioc):
    server_port, repeater_port, tcp_port = caproto_ioc
    from caproto.sync.client import read, write
    from caproto.threading.client import Context

    bpf = f"udp port {server_port} or udp port {repeater_port} or tcp port {tcp_port}"
    options = {"ChannelAccessChef": {"ports": [server_port, repeater_port]}}
    with live_kitchen(bpf, [ChannelAccessChef], options) as lk:
        ctx = Context()
        try:
            (pv,) = ctx.get_pvs("ndtest:count", timeout=5)
            pv.wait_for_connection(timeout=5)
            updates: list = []
            sub = pv.subscribe(data_type="time")

            def on_update(subscription, response) -> None:
                updates.append(list(response.data))

            # caproto holds callbacks weakly: on_update must stay referenced
            sub.add_callback(on_update)
            for _ in range(100):
                if updates:
                    break
                time.sleep(0.05)
            value = read("ndtest:temp", timeout=5).data
            assert list(value) == [98.5]
            write("ndtest:count", [13], notify=True, timeout=5)
            read("ndtest:count", timeout=5)
            for _ in range(100):
                if len(updates) >= 2:
                    break
                time.sleep(0.05)
            assert updates[:2] == [[12], [13]]

            def seen(ds: list) -> bool:
                cmds = [d["payload"].get("command") for d in ds]
                return cmds.count("EventAddResponse") >= 2 and "WriteNotifyResponse" in cmds
            assert lk.wait_for(seen, timeout=10)
        finally:
            ctx.disconnect()
    payloads = lk.payloads("ChannelAccessChef")

    commands = [p for p in payloads if "command" in p]
    assert not [p for p in commands if p["command"] == "error"]

    def find(command: str, pv: str) -> list[dict]:
        return [p for p in commands if p["command"] == command and p["pv"] == pv]

    for name in ("ndtest:count", "ndtest:temp"):
        assert find("SearchRequest", name), name
        assert find("SearchResponse", name), name
        assert find("CreateChanRequest", name) and find("CreateChanResponse", name)
    search = find("SearchResponse", "ndtest:temp")[0]
    assert search["transport"] == "udp" and search["fields"]["port"] == tcp_port
    assert search["server_address"] == f"127.0.0.1:{tcp_port}"
    read_resp = find("ReadNotifyResponse", "ndtest:temp")
    assert read_resp[0]["fields"]["data"] == [98.5] and read_resp[0]["latency"] >= 0
    assert read_resp[0]["flow"]["server"] == f"127.0.0.1:{tcp_port}"  # found by detect()
    (write_req,) = find("WriteNotifyRequest", "ndtest:count")
    assert write_req["fields"]["data"] == [13]
    assert find("WriteNotifyResponse", "ndtest:count")[0]["fields"]["status"] == "ECA_NORMAL"
    assert find("EventAddRequest", "ndtest:count")
    monitor = [p["fields"]["data"] for p in find("EventAddResponse", "ndtest:count")]
    assert monitor[:2] == [[12], [13]]
    stats = [p for p in payloads if p.get("kind") == "stats"]
    assert stats and {"ndtest:count", "ndtest:temp"} <= set(stats[-1]["pvs_seen"])


def test_old_read_response_decodes_without_warnings():
    with pytest.warns(UserWarning):  # caproto warns when *building* one
        msg = caproto.ReadResponse(data=[7], data_type=ChannelType.LONG, data_count=1,
                                   sid=1, ioid=2)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (ev,) = ChannelAccessDecoder().feed(S2C, bytes(msg))
    assert ev.command == "ReadResponse" and ev.fields["data"] == [7]


# -- the caproto-shark experience -------------------------------------------------------


def test_nd_sniff_reads_pipe_and_prints_one_line_per_command(capture_run):
    commands, _ = capture_run
    fmt = "{timestamp} {src}->{dst} {payload[command]}"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "nd-sniff"), "--read", "-", "-c",
         "ChannelAccessChef", "--print", "--format", fmt, "-q"],
        input=PCAP.read_bytes(), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = proc.stdout.decode().splitlines()
    lines = [line for line in out if re.search(r" \S+:\d+->\S+:\d+ \w+$", line)]
    assert len(lines) == len(commands) and len(out) == len(commands) + 1  # + the stats
    for line, p in zip(lines, commands):
        assert line.endswith(f" {p['src']}->{p['dst']} {p['command']}")


@pytest.mark.live
def test_live_tcpdump_pipe_into_nd_sniff(caproto_ioc):
    """``tcpdump -U -w - | nd-sniff --read - -c ChannelAccessChef --print --format ...``"""
    import shutil

    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.skip("tcpdump not installed")
    server_port, repeater_port, tcp_port = caproto_ioc
    from caproto.sync.client import read

    bpf = f"udp port {server_port} or tcp port {tcp_port}"
    fmt = "{timestamp} {src}->{dst} {payload[command]} {payload[pv]}"
    dump = subprocess.Popen([tcpdump, "-i", "lo", "-U", "-w", "-", bpf],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sniff = subprocess.Popen(
        [str(Path(sys.executable).parent / "nd-sniff"), "--read", "-", "-q",
         "-c", "ChannelAccessChef", "-o", f"ChannelAccessChef.ports={server_port}",
         "--print", "--format", fmt],
        stdin=dump.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dump.stdout.close()  # nd-sniff owns the pipe now
    try:
        # tcpdump says "listening on lo" on stderr once it captures
        listening = threading.Event()
        threading.Thread(target=lambda: (dump.stderr.readline(), listening.set()),
                         daemon=True).start()
        assert listening.wait(10), "tcpdump did not start"
        time.sleep(0.2)
        assert list(read("ndtest:temp", timeout=5).data) == [98.5]
        # without --immediate-mode tcpdump gets packets from the kernel in blocks, at the
        # latest after its 1 s buffer timeout; stopping sooner would lose them
        time.sleep(1.5)
    finally:
        dump.terminate()
        dump.wait(5)
        out, err = sniff.communicate(timeout=30)
    lines = out.decode().splitlines()
    text = "\n".join(lines)
    assert sniff.returncode == 0, err.decode()[-2000:]
    assert re.search(rf" 127\.0\.0\.1:\d+->127\.0\.0\.1:{server_port} SearchRequest "
                     r"ndtest:temp$", text, re.M), text
    assert re.search(rf" 127\.0\.0\.1:{tcp_port}->127\.0\.0\.1:\d+ ReadNotifyResponse "
                     r"ndtest:temp$", text, re.M), text
    assert re.search(rf"127\.0\.0\.1:\d+->127\.0\.0\.1:{tcp_port} CreateChanRequest "
                     r"ndtest:temp$", text, re.M), text
