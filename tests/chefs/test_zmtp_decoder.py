"""ZmtpDecoder on its own, the way h11 is used: bytes in, events out; no kitchen, no chef,
no scapy.

The real bytes are the TCP payloads of the tests/data captures (pyzmq/libzmq 4.3.5 on both
sides), read by ``tcp_streams``; each direction goes to its own decoder and the events are
held against the capture's ``.expected.json``. Hostile input (cut streams, lying lengths,
reserved flag bits, other protocols, lost segments) must give a clear event, never raise.
"""

from __future__ import annotations

from typing import Any

import pytest

from netdumplings.chefs.zmtp.decoder import ZmtpDecoder, handshake_result
from netdumplings.chefs.zmtp.events import (Command, DecodeError, Greeting, Message, NotZmtp,
                                            Resynced)

from conftest import DATA, expected, tcp_streams

CAPTURES = sorted(p.name[:-len(".expected.json")] for p in DATA.glob("zmtp-*.expected.json"))
SIDES = ((True, "client_to_server"), (False, "server_to_client"))


def connections(capture: str) -> list[tuple[dict[str, Any], list[tuple[bool, bytes, float]]]]:
    """(ground truth, payloads) of each connection of a capture."""
    truth = expected(f"{capture}.pcap")
    streams = tcp_streams(f"{capture}.pcap", truth["server_port"])
    return [(conn, streams[conn["client"]]) for conn in truth["connections"]]


def decode(chunks: list[tuple[bool, bytes, float]], piece: int | None = None
           ) -> tuple[dict[bool, ZmtpDecoder], dict[bool, list[Any]]]:
    """Both directions decoded to their end; ``piece``: feed that many bytes at a time."""
    decoders = {True: ZmtpDecoder(), False: ZmtpDecoder()}
    events: dict[bool, list[Any]] = {True: [], False: []}
    for to_server, data, _ in chunks:
        step = piece or len(data)
        for i in range(0, len(data), step):
            events[to_server] += decoders[to_server].feed(data[i:i + step])
    for side, decoder in decoders.items():
        events[side] += decoder.end()
    return decoders, events


def first_greeting(capture: str = "zmtp-push-pull") -> bytes:
    """A real 64-byte libzmq greeting (the client's, from a capture)."""
    (_, chunks), = connections(capture)[:1]
    stream = b"".join(data for to_server, data, _ in chunks if to_server)
    return stream[:64]


def assert_command_matches(cmd: Command, want: dict[str, Any]) -> None:
    assert cmd.name == want["command"]
    for key, value in want.items():
        if key in ("command", "note", "encoding"):
            continue
        if key == "password":  # in clear on the wire; the decoder must not pass it on
            assert cmd.fields["password_length"] == len(value)
            assert value not in repr(cmd.fields)
            continue
        assert cmd.fields[key] == value, (cmd.name, key)


# -- real connections --------------------------------------------------------------------------


@pytest.mark.parametrize("capture", CAPTURES)
def test_real_connections_decode_as_their_ground_truth(capture: str) -> None:
    for conn, chunks in connections(capture):
        decoders, events = decode(chunks)
        for side, name in SIDES:
            evs = events[side]
            assert not [e for e in evs if isinstance(e, (DecodeError, NotZmtp))], evs
            (greeting,) = [e for e in evs if isinstance(e, Greeting)]
            want = conn["greeting"][name]
            assert (list(greeting.version), greeting.mechanism, greeting.as_server,
                    greeting.signature_hex) == (want["version"], want["mechanism"],
                                                want["as_server"], want["signature_hex"])
            commands = [e for e in evs if isinstance(e, Command)]
            handshake = [c for c in commands if c.phase == "handshake"]
            after = [c for c in commands if c.phase == "traffic"]
            assert len(handshake) == len(conn["handshake"][name])
            assert len(after) == len(conn["commands_after_handshake"][name])
            for cmd, want_cmd in zip(handshake + after, conn["handshake"][name]
                                     + conn["commands_after_handshake"][name]):
                assert_command_matches(cmd, want_cmd)
            messages = [e for e in evs if isinstance(e, Message)]
            assert [[f.view() for f in m.frames] for m in messages] == \
                [m["frames"] for m in conn["messages"][name]]
            assert decoders[side].messages == len(messages)
        assert handshake_result(decoders[True], decoders[False]) == conn["handshake_result"]


def test_events_do_not_depend_on_how_the_bytes_are_cut() -> None:
    """A stream decoder: one byte at a time gives what whole TCP segments give."""
    for capture in ("zmtp-req-rep", "zmtp-multipart-long", "zmtp-plain-auth"):
        for _, chunks in connections(capture):
            assert decode(chunks, piece=1)[1] == decode(chunks)[1], capture


# -- hostile input ---------------------------------------------------------------------------


@pytest.mark.parametrize("capture", ["zmtp-req-rep", "zmtp-multipart-long"])
def test_a_stream_cut_anywhere_says_so_at_its_end(capture: str) -> None:
    """Every cut of a real stream: the events before the cut are those of the whole stream,
    and the end reports the cut (greeting, frame header, frame body or multipart message)
    as a fatal DecodeError instead of raising or inventing a message."""
    (_, chunks), = connections(capture)[:1]
    stream = b"".join(data for to_server, data, _ in chunks if to_server)
    whole = ZmtpDecoder().feed(stream)
    boundaries = {0}
    decoder = ZmtpDecoder()
    for i in range(len(stream)):  # the offsets at which an event completes
        if decoder.feed(stream[i:i + 1]):
            boundaries.add(i + 1)
    cut_messages = 0
    for cut in range(1, len(stream)):
        decoder = ZmtpDecoder()
        events = decoder.feed(stream[:cut])
        assert events == whole[:len(events)]
        tail = decoder.end()
        if cut in boundaries:
            continue
        if cut < 10:  # not even the signature: nothing says this was ZMTP
            assert tail == [NotZmtp("not ZMTP", stream[:cut].hex())]
            continue
        assert tail and all(isinstance(e, DecodeError) and e.fatal for e in tail), (cut, tail)
        assert "stream ended inside" in tail[-1].error
        cut_messages += "multipart message" in tail[-1].error
        assert decoder.stopped
    assert cut_messages  # some cuts fell between the frames of one message


def test_a_frame_that_claims_more_than_is_believable_stops_the_direction() -> None:
    decoder = ZmtpDecoder(max_frame=1 << 20)
    long_frame = bytes([0x02]) + (1 << 40).to_bytes(8, "big") + b"x" * 100
    events = decoder.feed(first_greeting() + long_frame)
    assert isinstance(events[0], Greeting)
    (error,) = events[1:]
    assert isinstance(error, DecodeError) and error.fatal
    assert f"claims {1 << 40} bytes" in error.error
    assert decoder.feed(b"\x00\x05hello") == []  # no longer decoded, only counted
    assert decoder.stopped and decoder.skipped_bytes >= 7 and decoder.buffered == 0


def test_a_big_frame_costs_its_preview_not_its_size() -> None:
    """A peer announcing 4 GB gets a streamed, hashed frame, not a 4 GB buffer."""
    decoder = ZmtpDecoder(max_shown=64)
    decoder.feed(first_greeting() + bytes([0x02]) + (1 << 32).to_bytes(8, "big"))
    for _ in range(64):
        assert decoder.feed(b"z" * 65536) == []
    assert decoder.buffered <= 64
    (error,) = decoder.end()
    assert error.fatal and f"{64 * 65536} of {1 << 32} bytes" in error.error


def test_reserved_flag_bits_are_not_read_as_a_frame() -> None:
    decoder = ZmtpDecoder()
    (_, error) = decoder.feed(first_greeting() + b"\xf0\x03abc")
    assert isinstance(error, DecodeError) and error.fatal and "reserved bits" in error.error


def test_commands_with_lying_lengths_give_an_error_field() -> None:
    greeting = first_greeting()
    # READY whose Socket-Type value claims 200 bytes and carries 4
    ready = b"\x05READY" + b"\x0bSocket-Type" + (200).to_bytes(4, "big") + b"PUSH"
    events = ZmtpDecoder().feed(greeting + bytes([0x04, len(ready)]) + ready)
    (cmd,) = [e for e in events if isinstance(e, Command)]
    assert cmd.name == "READY" and "claims 200 bytes, 4 left" in cmd.fields["error"]
    # a command name length byte saying 30 in a 4-byte body
    events = ZmtpDecoder().feed(greeting + b"\x04\x04\x1eRDY")
    (cmd,) = [e for e in events if isinstance(e, Command)]
    assert cmd.name == "?" and cmd.fields["error"] == "command name is cut short"
    # PING without its 2-byte TTL
    events = ZmtpDecoder().feed(greeting + b"\x04\x05\x04PING")
    (cmd,) = [e for e in events if isinstance(e, Command)]
    assert cmd.name == "PING" and "shorter than its 2-byte TTL" in cmd.fields["error"]


@pytest.mark.parametrize("data, protocol", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not ZMTP"),
    (b"\xff" + b"\x00" * 8 + b"\x7f\x01\x00" + b"\x00" * 20, "ZMTP 2.0"),
    (b"\x05\x00hello", "ZMTP 1.0"),
], ids=["http", "zmtp2", "zmtp1"])
def test_other_protocols_are_named_once_not_decoded(data: bytes, protocol: str) -> None:
    decoder = ZmtpDecoder()
    (event,) = decoder.feed(data)
    assert isinstance(event, NotZmtp) and event.protocol == protocol
    assert decoder.feed(data) == [] and decoder.end() == []


def test_a_lost_segment_is_reported_and_decoding_resumes_after_it() -> None:
    (conn, chunks), = connections("zmtp-push-pull")
    client = [data for to_server, data, _ in chunks if to_server]
    want = [m["frames"] for m in conn["messages"]["client_to_server"]]
    lost = len(client) - 3  # a segment holding one whole message, near the end
    decoder = ZmtpDecoder()
    events = []
    for i, data in enumerate(client):
        events += decoder.gap(len(data)) if i == lost else decoder.feed(data)
    errors = [e for e in events if isinstance(e, DecodeError)]
    assert len(errors) == 1 and not errors[0].fatal and "missing" in errors[0].error
    (resynced,) = [e for e in events if isinstance(e, Resynced)]
    assert resynced.missing == len(client[lost])
    messages = [e for e in events if isinstance(e, Message)]
    shown = [[f.view() for f in m.frames] for m in messages]
    assert len(shown) == len(want) - 1 and all(m in want for m in shown)
    after = events[events.index(resynced) + 1:]
    first = next(e for e in after if isinstance(e, Message))
    assert first.after_gap and sum(m.after_gap for m in messages) == 1


# -- the decoder stands alone ------------------------------------------------------------------


