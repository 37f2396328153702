"""TCP reassembly: byte-level scenarios, properties under reordering and loss, real captures."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from netdumplings.capture.packet import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from netdumplings.flows.reassembly import Event, TcpDirection
from netdumplings.capture.sources import PcapSource

DATA_DIR = Path(__file__).parent.parent / "data"
M = 1 << 32


# -- helpers ----------------------------------------------------------------------------------

def render(events: list[Event]) -> list:
    """Events as a compact list: adjacent data merged to bytes, gaps as ints."""
    out: list = []
    for ev in events:
        assert ev.kind in ("data", "gap")
        if ev.kind == "data":
            assert isinstance(ev.data, bytes) and ev.size == len(ev.data) > 0
            if out and isinstance(out[-1], bytes):
                out[-1] += ev.data
            else:
                out.append(ev.data)
        else:
            assert ev.data is None and ev.size > 0
            out.append(ev.size)
    return out


def started(isn: int = 1000, **kw) -> TcpDirection:
    d = TcpDirection(**kw)
    assert d.next_seq is None
    assert d.feed(isn, b"", syn=True) == []
    assert d.next_seq == (isn + 1) % M
    return d


def check_stream(events: list[Event], original: bytes) -> tuple[int, int]:
    """Every data byte sits at its place in ``original``; returns (end position, gap bytes)."""
    pos = gap = 0
    for ev in events:
        if ev.kind == "data":
            assert ev.data == original[pos:pos + ev.size], f"wrong bytes at {pos}"
        else:
            gap += ev.size
        pos += ev.size
    return pos, gap


# -- byte-level scenarios ---------------------------------------------------------------------

def test_in_order():
    d = started(1000)
    assert render(d.feed(1001, b"hello ")) == [b"hello "]
    assert render(d.feed(1007, b"world")) == [b"world"]
    assert d.next_seq == 1012 and d.delivered == 11 and d.buffered == 0
    assert (d.gaps, d.duplicates, d.overlaps, d.evictions) == (0, 0, 0, 0)


def test_pure_acks_and_empty_segments_change_nothing():
    d = started(1000)
    for _ in range(3):
        assert d.feed(1001, b"") == []
        assert d.ack(1001) == []
    assert d.next_seq == 1001 and d.duplicates == 0


def test_syn_carrying_data():
    d = TcpDirection()
    assert render(d.feed(500, b"early", syn=True)) == [b"early"]
    assert d.next_seq == 506


def test_retransmit_of_delivered_data_is_dropped():
    d = started(1000)
    d.feed(1001, b"abc")
    d.feed(1004, b"def")
    assert d.feed(1001, b"abc") == []
    assert d.feed(1004, b"def") == []
    assert d.duplicates == 2 and d.delivered == 6
    assert render(d.feed(1007, b"g")) == [b"g"]


def test_duplicate_of_held_segment_is_dropped():
    d = started(1000)
    assert d.feed(1004, b"def") == []
    assert d.feed(1004, b"XYZ") == []     # same range again, other bytes: first copy wins
    assert d.duplicates == 1 and d.buffered == 3 and d.segments == 1
    assert render(d.feed(1001, b"abc")) == [b"abcdef"]


def test_reorder():
    d = started(1000)
    assert d.feed(1007, b"ghi") == []
    assert d.feed(1004, b"def") == []
    assert d.buffered == 6 and d.segments == 2
    events = d.feed(1001, b"abc")
    assert render(events) == [b"abcdefghi"]
    assert [e.data for e in events] == [b"abc", b"def", b"ghi"]   # held pieces, not copies
    assert d.buffered == 0 and d.segments == 0 and d.next_seq == 1010
    # back on the fast path afterwards
    payload = b"jkl"
    (ev,) = d.feed(1010, payload)
    assert ev.data is payload


def test_overlap_partial_with_delivered_first_copy_wins():
    d = started(1000)
    d.feed(1001, b"abcd")
    assert render(d.feed(1003, b"XYef")) == [b"ef"]
    assert d.overlaps == 1 and d.next_seq == 1007


def test_overlap_full_superset_over_delivered_and_held():
    d = started(1000)
    d.feed(1001, b"abc")
    d.feed(1007, b"ghi")                                   # held
    events = d.feed(1001, b"ABCDEFGHIJ")                   # covers both and more
    assert render(events) == [b"DEFghiJ"]
    assert d.overlaps == 1 and d.next_seq == 1011 and d.buffered == 0


def test_overlap_with_held_data_partial():
    d = started(1000)
    d.feed(1005, b"efgh")                                  # held 1005..1009
    assert d.feed(1007, b"XYij") == []                     # 1007..1009 held already
    assert d.overlaps == 1 and d.buffered == 6
    assert d.feed(1003, b"cdEF") == []                     # EF overlap held 'ef'
    assert d.overlaps == 2 and d.buffered == 8
    assert render(d.feed(1001, b"ab")) == [b"abcdefghij"]


def test_overlap_contained_in_held_is_duplicate():
    d = started(1000)
    d.feed(1004, b"defghi")
    assert d.feed(1005, b"EF") == []
    assert d.duplicates == 1 and d.overlaps == 0 and d.buffered == 6


def test_new_segment_filling_several_holes_between_held_pieces():
    d = started(1000)
    d.feed(1003, b"c")
    d.feed(1005, b"e")
    d.feed(1007, b"g")
    assert render(d.feed(1001, b"abXdXfXh")) == [b"abcdefgh"]
    assert d.overlaps == 1 and d.segments == 0


def test_wrap_around():
    isn = M - 10
    d = started(isn)
    data = bytes(range(65, 95))                            # 30 bytes crossing 2**32
    base = isn + 1
    segs = [(base, data[:6]), (base + 6, data[6:15]), (base + 15, data[15:30])]
    # out of order, seqs given already wrapped (as on the wire)
    assert d.feed(segs[2][0] % M, segs[2][1]) == []
    assert d.feed(segs[1][0] % M, segs[1][1]) == []
    assert render(d.feed(segs[0][0], segs[0][1])) == [data]
    assert d.next_seq == (base + 30) % M == 21
    # a retransmission from before the wrap is still old, not 4 GB ahead
    assert d.feed(segs[0][0], segs[0][1]) == [] and d.duplicates == 1
    # an ack across the wrap releases a hole
    d.feed(25, b"late")
    assert render(d.ack(25)) == [4, b"late"]


def test_wrap_around_without_syn():
    d = TcpDirection()
    assert render(d.feed(M - 3, b"abcdef")) == [b"abcdef"]
    assert d.next_seq == 3
    assert render(d.feed(3, b"g")) == [b"g"]


def test_mid_stream_start_without_syn():
    d = TcpDirection()
    assert d.feed(5000, b"") == [] and d.next_seq is None   # a bare ACK does not start it
    assert render(d.feed(5000, b"hello")) == [b"hello"]
    assert d.next_seq == 5005
    assert d.feed(4990, b"0123456789") == []                 # before our start: old data
    assert d.duplicates == 1


def test_gap_reported_via_ack():
    d = started(1000)
    d.feed(1001, b"abc")                  # 1001..1004 delivered, 1004..1010 missing
    d.feed(1010, b"xyz")                  # held
    assert d.ack(1004) == []              # does not pass the hole
    assert d.ack(1003) == []
    assert render(d.ack(1005)) == [1]     # part of the hole below the ack
    assert d.next_seq == 1005 and d.buffered == 3
    assert render(d.ack(1008)) == [3]
    assert render(d.ack(1012)) == [2, b"xyz"]
    assert d.next_seq == 1013 and d.buffered == 0
    assert (d.gaps, d.gap_bytes) == (3, 6)
    # a late retransmission of the lost bytes is old news now
    assert d.feed(1004, b"DEFGHI") == []


def test_ack_past_several_holes():
    d = started(1000)
    d.feed(1003, b"c")
    d.feed(1006, b"f")
    assert render(d.ack(1010)) == [2, b"c", 2, b"f"]
    assert d.next_seq == 1007


def test_ack_without_hole_changes_nothing():
    d = started(1000)
    d.feed(1001, b"abc")
    assert d.ack(1500) == []              # tail not seen: could still be on its way
    assert d.next_seq == 1004
    assert render(d.feed(1004, b"d")) == [b"d"]


def test_gap_reported_via_flush():
    d = started(1000)
    d.feed(1001, b"ab")
    d.feed(1005, b"ef")
    d.feed(1010, b"j")
    assert render(d.flush()) == [2, b"ef", 3, b"j"]
    assert d.buffered == 0 and d.segments == 0 and d.gap_bytes == 5
    assert d.flush() == []


def test_snaplen_missing_in_order():
    d = started(1000)
    assert render(d.feed(1001, b"GET /", missing=95)) == [b"GET /", 95]
    assert d.next_seq == 1101 and d.gap_bytes == 95 and d.delivered == 5
    assert render(d.feed(1101, b"next")) == [b"next"]


def test_snaplen_missing_out_of_order_and_retransmitted():
    d = started(1000)
    assert d.feed(1011, b"kl", missing=8) == []            # 1011..1021, 8 bytes lost
    assert d.buffered == 2                                  # lost bytes cost no memory
    assert render(d.feed(1001, b"abcdefghij")) == [b"abcdefghijkl", 8]
    assert d.feed(1011, b"klmnopqrst") == []                # too late, already reported
    assert d.next_seq == 1021


def test_snaplen_whole_payload_missing():
    d = started(1000)
    assert render(d.feed(1001, b"", missing=40)) == [40]
    assert d.next_seq == 1041


def test_rst_mid_stream_flushes_and_finishes():
    d = started(1000)
    d.feed(1001, b"abc")
    d.feed(1007, b"ghi")
    assert render(d.feed(1010, b"", rst=True)) == [3, b"ghi"]
    assert d.finished and d.buffered == 0
    assert d.feed(1010, b"more") == [] and d.after_fin == 1


def test_rst_before_anything():
    d = TcpDirection()
    assert d.feed(77, b"", rst=True) == []
    assert d.finished


def test_fin_lifecycle():
    d = started(1000)
    d.feed(1001, b"abc")
    assert render(d.feed(1004, b"def", fin=True)) == [b"def"]
    assert d.finished and d.next_seq == 1008               # FIN took one number
    assert d.feed(1004, b"", fin=True) == []               # retransmitted FIN
    assert d.feed(1008, b"zzz") == [] and d.after_fin == 1
    assert d.feed(1001, b"abc") == [] and d.duplicates == 1   # late retransmission
    assert d.after_fin == 1
    assert d.ack(2000) == [] and d.flush() == []


def test_fin_held_until_hole_filled():
    d = started(1000)
    d.feed(1004, b"def", fin=True)
    assert not d.finished
    d.feed(1100, b"beyond the FIN")                        # cannot be in this stream
    assert d.after_fin == 1 and d.buffered == 3
    assert render(d.feed(1001, b"abc")) == [b"abcdef"]
    assert d.finished and d.next_seq == 1008


def test_fin_cuts_held_data_beyond_it():
    d = started(1000)
    d.feed(1005, b"efghij")                               # held 1005..1011
    d.feed(1003, b"cd", fin=False)
    assert d.feed(1007, b"", fin=True) == []              # FIN at 1007: 'ij'.. cut
    assert d.buffered == 4 and d.after_fin == 1
    assert render(d.feed(1001, b"ab")) == [b"abcdef"]
    assert d.finished


def test_fin_with_hole_released_by_ack_and_by_flush():
    d = started(1000)
    d.feed(1001, b"ab")
    d.feed(1010, b"", fin=True)
    assert render(d.ack(1011)) == [7]                      # peer acked the FIN
    assert d.finished
    d2 = started(1000)
    d2.feed(1001, b"ab")
    d2.feed(1010, b"", fin=True)
    assert render(d2.flush()) == [7] and d2.finished


def test_bare_fin_starts_mid_stream_flow():
    d = TcpDirection()
    assert d.feed(9000, b"", fin=True) == []
    assert d.finished and d.next_seq == 9001


def test_memory_limit_peer_never_fills_hole():
    limit = 64 * 1024
    d = started(0, max_buffer=limit)
    seq, lost = 1 + 100, 100                               # bytes 1..101 never arrive
    events: list[Event] = []
    for i in range(300):
        events += d.feed(seq, bytes([i % 256]) * 1000)
        seq += 1000
        assert d.buffered <= limit
    assert d.evictions == 1 and d.gaps == 1
    out = render(events)
    assert out[0] == lost and isinstance(out[1], bytes)
    assert d.gap_bytes + d.delivered == seq - 1 and d.buffered == 0
    assert d.next_seq == seq


def test_memory_limit_repeated_holes():
    d = started(0, max_buffer=5000)
    events: list[Event] = []
    for i in range(100):                                   # every other 1000-byte segment lost
        events += d.feed(1 + 2000 * i + 1000, b"x" * 1000)
        assert d.buffered <= 5000
    events += d.flush()
    pos, gap = check_stream(events, (b"\0" * 1000 + b"x" * 1000) * 100)
    assert pos == 200_000 and gap == d.gap_bytes == 100_000 and d.delivered == 100_000
    assert d.evictions >= 90


def test_segment_limit():
    d = started(0, max_segments=8)
    for i in range(50):
        d.feed(1 + 2 * i + 1, b"y")                       # 1-byte holes between 1-byte pieces
        assert d.segments <= 8
    assert d.evictions == 50 - 8
    assert d.buffered == 8


def test_oversized_out_of_order_segment_is_never_held():
    d = started(0, max_buffer=100)
    big = b"z" * 500
    events = d.feed(11, big)
    assert render(events) == [10, big]
    assert d.buffered == 0 and d.evictions == 1


def test_odd_input_never_raises():
    assert TcpDirection(max_buffer=-5, max_segments=0).max_buffer == 1
    assert TcpDirection(max_buffer=-5, max_segments=0).max_segments == 1
    d = TcpDirection()
    d.feed(-1, b"", syn=True)                              # masked to 2**32-1
    assert d.next_seq == 0
    assert render(d.feed(0, bytearray(b"ab"))) == [b"ab"]
    assert render(d.feed(2, memoryview(b"cd"))) == [b"cd"]
    assert render(d.feed(4 + M * 7, b"ef")) == [b"ef"]    # huge: masked
    assert d.feed(6, None) == []                           # type: ignore[arg-type]
    assert render(d.feed(6, b"gh", missing=-3)) == [b"gh"]
    assert d.feed("x", b"ij") == []                        # type: ignore[arg-type]
    assert d.ack(None) == [] and d.ack(-1) == [] and d.ack(2 ** 80) == []  # type: ignore
    assert d.feed(10**6, b"far", missing=10**12) == []     # held, far ahead
    assert d.buffered == 3
    events = d.flush()                                     # absurd 'missing' is clamped
    assert render(events)[:2] == [10**6 - 8, b"far"] and events[-1].size <= 1 << 24
    assert d.next_seq == 8 or d.next_seq > 10**6


def test_in_order_10000_segments_no_copies():
    """The fast path hands the caller's own bytes objects back: nothing is copied or joined,
    nothing is held, one event per segment (so no growing buffer to copy quadratically)."""
    d = started(123)
    seq = 124
    payloads = [bytes([i % 251]) * (1 + i % 1400) for i in range(10_000)]
    total = 0
    for p in payloads:
        events = d.feed(seq, p)
        assert len(events) == 1 and events[0].data is p and events[0].size == len(p)
        assert d.ack(seq) == []
        seq = (seq + len(p)) % M
        total += len(p)
    assert d.buffered == 0 and d.segments == 0 and not d._chunks
    assert d.delivered == total and d.next_seq == seq


# -- properties -------------------------------------------------------------------------------

ISNS = st.one_of(st.integers(0, M - 1), st.integers(M - 3000, M - 1))


@st.composite
def segmented(draw, max_size=1500):
    data = draw(st.binary(min_size=1, max_size=max_size))
    cuts = sorted(set(draw(st.lists(st.integers(1, len(data) - 1), max_size=40))
                      if len(data) > 1 else []))
    bounds = [0, *cuts, len(data)]
    segs = [(a, b) for a, b in zip(bounds, bounds[1:])]
    return data, segs


@settings(max_examples=200, deadline=None)
@given(case=segmented(), isn=ISNS, rnd=st.randoms(use_true_random=False),
       extra=st.lists(st.tuples(st.integers(0, 1500), st.integers(1, 300)), max_size=10),
       with_fin=st.booleans())
def test_property_reorder_duplicate_overlap(case, isn, rnd, extra, with_fin):
    data, segs = case
    n = len(data)
    pieces = list(segs)
    pieces += [rnd.choice(segs) for _ in range(rnd.randint(0, 5))]          # duplicates
    pieces += [(a % n, min(n, a % n + k)) for a, k in extra]                 # overlaps
    rnd.shuffle(pieces)
    d = started(isn)
    events: list[Event] = []
    base = isn + 1
    fin_at = rnd.randrange(len(pieces) + 1) if with_fin else None
    for i, (a, b) in enumerate(pieces):
        if i == fin_at:
            events += d.feed((base + n) % M, b"", fin=True)
        events += d.feed((base + a) % M, data[a:b])
        assert d.buffered <= n
    if fin_at == len(pieces):
        events += d.feed((base + n) % M, b"", fin=True)
    events += d.flush()
    assert all(e.kind == "data" for e in events)
    assert b"".join(e.data for e in events) == data
    assert d.gaps == 0 and d.delivered == n and d.buffered == 0 and d.segments == 0
    assert d.finished == with_fin
    assert d.next_seq == (base + n + (1 if with_fin else 0)) % M


@settings(max_examples=200, deadline=None)
@given(case=segmented(), isn=ISNS, rnd=st.randoms(use_true_random=False),
       drop=st.floats(0, 0.6), truncate=st.booleans(), acks=st.booleans(),
       small=st.booleans())
def test_property_loss_data_and_gaps_cover_exactly(case, isn, rnd, drop, truncate, acks, small):
    data, segs = case
    n = len(data)
    kept = [s for s in segs if rnd.random() >= drop]
    kept += [rnd.choice(kept) for _ in range(rnd.randint(0, 3))] if kept else []
    rnd.shuffle(kept)
    limits = dict(max_buffer=rnd.randint(1, 400), max_segments=rnd.randint(1, 6)) if small else {}
    d = started(isn, **limits)
    base = isn + 1
    events: list[Event] = []
    captured = set()                                       # positions captured as bytes
    fed_end = 0
    calls: list[list[Event]] = []
    for a, b in kept:
        cap = b
        if truncate and rnd.random() < 0.3:
            cap = rnd.randint(a, b)                        # snaplen cut this copy
        calls.append(d.feed((base + a) % M, data[a:cap], missing=b - cap))
        captured.update(range(a, cap))
        fed_end = max(fed_end, b)
        if acks and rnd.random() < 0.3:
            calls.append(d.ack((base + rnd.randint(0, fed_end)) % M))
        if small:
            assert d.buffered <= limits["max_buffer"]
            assert d.segments <= limits["max_segments"]
    calls.append(d.feed((base + n) % M, b"", fin=True))
    calls.append(d.flush())
    events = [e for call in calls for e in call]
    end, gap = check_stream(events, data)
    assert end == n and gap + d.delivered == n and gap == d.gap_bytes
    assert d.finished and d.buffered == 0
    for call in calls:                                     # one hole, one gap event
        assert not any(a.kind == b.kind == "gap" for a, b in zip(call, call[1:]))
    if not acks and not small and not truncate:
        # nothing forced a give-up: exactly the bytes never captured are reported lost
        assert d.delivered == len(captured) and d.evictions == 0


# -- real captures ----------------------------------------------------------------------------

def reassemble_capture(path: Path, order=None, acks: bool = True) -> tuple[dict, dict]:
    """Feed every TCP packet of a capture to one TcpDirection per direction, as the kitchen
    does (payload, snaplen-missing bytes, flags, the peer's ACK)."""
    src = PcapSource(str(path))
    try:
        packets = [p for p in src if p.l4 == "tcp"]
    finally:
        src.close()
    if order is not None:
        packets = order(packets)
    streams: dict[tuple, TcpDirection] = {}
    out: dict[tuple, list[Event]] = {}
    for p in packets:
        key = (f"{p.ip_src}:{p.sport}", f"{p.ip_dst}:{p.dport}")
        rev = (key[1], key[0])
        d = streams.setdefault(key, TcpDirection())
        out.setdefault(key, [])
        payload = p.l4_payload
        flags = p.tcp_flags
        out[key] += d.feed(p.tcp_seq, payload, syn=bool(flags & TCP_SYN),
                           fin=bool(flags & TCP_FIN), rst=bool(flags & TCP_RST),
                           missing=p.l4_length - len(payload))
        if acks and flags & TCP_ACK and rev in streams:
            out[rev] += streams[rev].ack(p.tcp_ack)
    for key, d in streams.items():
        out[key] += d.flush()
    return streams, out


def _fluentd_check(streams: dict, out: dict) -> None:
    exp = json.loads((DATA_DIR / "fluentd-segmented.expected.json").read_text())
    assert len(exp["connections"]) == exp["counts"]["connections"]
    for conn in exp["connections"]:
        for direction, key in (("client_to_server", (conn["client"], conn["server"])),
                               ("server_to_client", (conn["server"], conn["client"]))):
            d = streams[key]
            assert d.finished and d.gaps == 0 and d.buffered == 0
            stream = b"".join(e.data for e in out[key])
            pos = 0
            for msg in conn["messages"]:
                if msg["dir"] != direction:
                    continue
                chunk = stream[pos:pos + msg["encoded_length"]]
                assert hashlib.sha256(chunk).hexdigest() == msg["encoded_sha256"]
                if "encoded_hex" in msg:
                    assert chunk.hex() == msg["encoded_hex"]
                pos += msg["encoded_length"]
            assert pos == len(stream)                   # nothing else in the stream


def test_capture_segmented_fluentd_stream_is_exact():
    streams, out = reassemble_capture(DATA_DIR / "fluentd-segmented.pcap")
    _fluentd_check(streams, out)


def test_capture_segmented_fluentd_reordered_is_exact():
    """The same real segments, handshake first, then every other packet in reverse order and
    some duplicated: the rebuilt streams must not change. ACKs are not used: reversed, they
    would (rightly) declare everything before them lost."""
    def scramble(packets):
        rng = random.Random(7)
        first = [p for p in packets if p.tcp_flags & TCP_SYN]
        rest = [p for p in packets if not p.tcp_flags & TCP_SYN]
        rest.reverse()
        rest += rng.sample(rest, 20)
        return first + rest

    streams, out = reassemble_capture(DATA_DIR / "fluentd-segmented.pcap", scramble, acks=False)
    _fluentd_check(streams, out)
    assert sum(d.duplicates + d.overlaps for d in streams.values()) >= 1


def _http_bytes(start_line: str, headers: list, body) -> bytes:
    head = start_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + (body or "").encode("utf-8")


def test_capture_snaplen_truncated_http_gaps_at_the_right_places():
    exp = json.loads((DATA_DIR / "corrupt" / "http1-snaplen96.expected.json").read_text())
    streams, out = reassemble_capture(DATA_DIR / "corrupt" / "http1-snaplen96.pcap")
    assert exp["truncation"]["packets_truncated"] > 0
    (conn,) = exp["connections"]
    requests = b"".join(
        _http_bytes(f"{x['request']['method']} {x['request']['target']} "
                    f"{x['request']['version']}", x["request"]["headers"],
                    x["request"].get("body")) for x in conn["exchanges"])
    responses = b"".join(
        _http_bytes(f"{x['response']['version']} {x['response']['status']} "
                    f"{x['response']['reason']}", x["response"]["headers"],
                    x["response"].get("body")) for x in conn["exchanges"])
    for key, original in (((conn["client"], conn["server"]), requests),
                          ((conn["server"], conn["client"]), responses)):
        d = streams[key]
        end, gap = check_stream(out[key], original)
        assert end == len(original) and gap > 0 and d.delivered > 0
        assert d.finished and d.buffered == 0
    # every request line start is visible despite the truncation
    c2s = out[(conn["client"], conn["server"])]
    seen = b"".join(e.data for e in c2s if e.kind == "data")
    for x in conn["exchanges"]:
        assert f"{x['request']['method']} {x['request']['target']}".encode() in seen
