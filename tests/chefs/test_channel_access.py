"""ChannelAccessChef: the shared CA capture against its ground truth (whole, joined
mid-circuit, with a segment lost), the chef shell without a kitchen, fuzzing, and nd-sniff
reading a capture from a pipe. The decoder's framing edge cases (split, batched, oversized,
garbage, gaps) are in test_channel_access_decoder.py, a live caproto IOC and clients in
test_channel_access_live.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import caproto
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netdumplings.kitchen.chef import CloseReason, Direction, iter_payloads
from netdumplings.chefs.channel_access import ChannelAccessChef
from netdumplings.flows.table import Flow
from netdumplings.kitchen.offline import read_dumplings

from conftest import DATA
from test_channel_access_decoder import as_bytes, client_stream, server_stream

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
