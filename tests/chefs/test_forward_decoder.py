"""The receiving side of PacketForwardChef on its own: a payload in, frame records out; no
kitchen, no chef, no scapy.

The frames are real ones (tests/data captures, read by the framework's pcap reader), put in
a version-1 payload as the format in ``netdumplings.chefs.forward`` describes it, and sent
through what a hub link does to it (JSON text, or msgpack with raw bytes). A payload that is
not what it should be raises ``ValueError`` with a message saying what is wrong (the
receivers, nd-cook and nd-dump, count and log it and go on); never another exception.
"""

from __future__ import annotations

import base64
import json

import msgpack
import pytest

from netdumplings.chefs.forward.decoder import (PAYLOAD_VERSION, BatchTracker, decode_frame,
                                                iter_frames)
from netdumplings.capture.sources import PcapSource

from conftest import DATA


def real_frames(name: str = "http1-keepalive.pcap") -> list[tuple[float, bytes, int]]:
    return [(p.time, bytes(p.data), p.linktype) for p in PcapSource(DATA / name)]


def payload(frames: list[tuple[float, bytes, int]], raw: bool = False) -> dict:
    """A version-1 payload as the format describes it."""
    return {"v": PAYLOAD_VERSION, "kitchen": "k", "kitchen_host": "h", "batch": 1, "first": 0,
            "snaplen": 262144, "encoding": "bytes" if raw else "base64",
            "outbox_dropped_total": None,
            "packets": [{"ts": ts, "caplen": len(data), "wirelen": len(data), "linktype": lt,
                         "interface": "lo",
                         "data": data if raw else base64.b64encode(data).decode("ascii")}
                        for ts, data, lt in frames]}


def test_real_frames_come_back_exactly_over_json_and_msgpack() -> None:
    frames = real_frames()
    over_json = json.loads(json.dumps(payload(frames)))
    over_msgpack = msgpack.unpackb(msgpack.packb(payload(frames, raw=True)), raw=False)
    for received in (over_json, over_msgpack):
        records = iter_frames(received)
        assert [(r["ts"], r["data"], r["linktype"]) for r in records] == frames
        assert all(r["wirelen"] == len(r["data"]) and r["interface"] == "lo"
                   and r["ts_ns"] is None for r in records)


def test_raw_bytes_that_met_a_json_encoder_anyway_come_back() -> None:
    """A raw-bytes payload on a JSON link: valid UTF-8 arrives as text, the rest as
    ``{"$base64": ...}``; both give the frame back."""
    utf8 = "ascii and é".encode()
    binary = real_frames()[0][1]
    assert decode_frame(utf8.decode(), "bytes") == utf8
    assert decode_frame({"$base64": base64.b64encode(binary).decode()}, "bytes") == binary


# -- hostile input ---------------------------------------------------------------------------


@pytest.mark.parametrize("received, error", [
    ({"v": 1}, "no 'packets' list"),
    ([1, 2, 3], "no 'packets' list"),
    ({"packets": ["frame"]}, "not an object"),
    ({"packets": [{"ts": True, "data": ""}]}, "no numeric 'ts'"),
    ({"packets": [{"ts": "1.5", "data": ""}]}, "no numeric 'ts'"),
    ({"packets": [{"ts": 1.0, "data": "AAAA", "wirelen": "60"}]}, "must be integers"),
    ({"packets": [{"ts": 1.0, "data": 42}]}, "unsupported frame data of type int"),
    ({"packets": [{"ts": 1.0, "data": "not base64!"}]}, "Only base64 data"),
    ({"packets": [{"ts": 1.0, "data": "QUJD"[:3]}]}, "Incorrect padding"),  # cut short
], ids=["no-packets", "not-a-map", "record", "bool-ts", "text-ts", "wirelen", "data-type",
        "bad-base64", "cut-base64"])
def test_a_payload_that_lies_is_a_value_error(received, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        iter_frames(received)


def test_a_wire_length_shorter_than_the_frame_is_not_believed() -> None:
    ts, data, lt = real_frames()[0]
    received = payload([(ts, data, lt)])
    received["packets"][0]["wirelen"] = 10
    (record,) = iter_frames(received)
    assert record["wirelen"] == len(data)


def test_batches_lost_resent_or_restarted_are_told_apart_per_kitchen() -> None:
    tracker = BatchTracker()
    a, b = ("ka", "host1"), ("kb", "host2")
    assert tracker.check(a, {"batch": 1, "first": 0}, 10) == BatchTracker.OK
    assert tracker.check(b, {"batch": 7, "first": 60}, 10) == BatchTracker.OK
    assert tracker.check(a, {"batch": 4, "first": 45}, 5) == BatchTracker.OK  # 2 lost
    assert (tracker.missed_batches, tracker.missed_packets) == (2, 35)
    assert tracker.check(a, {"batch": 3, "first": 30}, 5) == BatchTracker.DUPLICATE
    assert tracker.check(b, {"batch": 8, "first": 70}, 10) == BatchTracker.OK
    assert tracker.check(a, {"batch": 1, "first": 0}, 3) == BatchTracker.RESTART
    # a producer that does not number its batches is taken as it comes
    assert tracker.check(a, {"batch": "x"}, 3) == BatchTracker.OK
    tracker.forget(b)
    assert tracker.check(b, {"batch": 1, "first": 0}, 1) == BatchTracker.OK
    assert (tracker.missed_batches, tracker.duplicates) == (2, 1)


# -- the decoder stands alone ------------------------------------------------------------------


