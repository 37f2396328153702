"""The DNS fast path against dnslib.

parse_message answers from its own struct decoder when it can and from dnslib otherwise;
what it returns must never depend on which one answered. These tests hold the fast path
to dnslib's output field by field wherever it answers, and check that it does answer for
ordinary traffic (or the speed-up would silently disappear).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import dnslib
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netdumplings.chefs.dns import fast_parse, parse_message, parse_message_dnslib

from conftest import DATA

CAPTURES = [DATA / "dns-queries.pcap", DATA / "corrupt" / "dns-queries.pcapng"]


def _udp_payloads(pcap: Path) -> list[bytes]:
    from scapy.layers.inet import UDP
    from scapy.utils import rdpcap

    return [bytes(p[UDP].payload) for p in rdpcap(str(pcap)) if p.haslayer(UDP)]


def assert_same_as_dnslib(data: bytes, *, must_answer: bool = False) -> bool:
    """Fast path == dnslib wherever the fast path answers; True when it answered."""
    fast = fast_parse(data)
    if fast is None:
        assert not must_answer, f"fast path declined {data.hex()}"
        return False
    try:
        ref = parse_message_dnslib(data)
    except Exception as exc:  # the fast path accepted what dnslib refuses
        raise AssertionError(f"dnslib refuses {data.hex()} ({exc!r}) but the fast path "
                             f"answered {fast}") from None
    assert asdict(fast) == asdict(ref), data.hex()
    # the message parse_message gives (what the chef uses) is the fast one
    assert asdict(parse_message(data)) == asdict(ref)
    return True


@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.name)
def test_fast_path_answers_real_captures_like_dnslib(pcap: Path) -> None:
    payloads = _udp_payloads(pcap)
    assert len(payloads) >= 10
    for data in payloads:
        assert_same_as_dnslib(data, must_answer=True)


# mostly ordinary labels (so most messages are ones the fast path answers), sometimes ones
# dnslib escapes or refuses
_LABEL_BYTES = st.sampled_from([b"a", b"www", b"example", b"com", b"x-y_z", b"A1"] * 8 + [
    b"with space", b"dot.inside", b"tab\t", b"\x7f", b"\x00", b"caf\xc3\xa9", b"\xff\xfe",
    b"*", b"\\", b'"q"'])
_NAMES = st.lists(_LABEL_BYTES, max_size=5).map(lambda ls: dnslib.DNSLabel(ls))
_IPV6 = st.lists(st.sampled_from([0, 0, 0, 1, 0xab, 0xff]), min_size=16, max_size=16)
_TXT_STRINGS = st.lists(st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"v=spf1 -all", b"", b"quote\"back\\slash", b"\x00\x01\x1f\x7f",
                     b"utf8 \xe2\x9c\x93", b"bad \xff utf8", b"x" * 255])), min_size=1, max_size=4)


def _rdata_strategy() -> st.SearchStrategy:
    times = st.tuples(*[st.integers(0, 2**32 - 1)] * 5)
    common = st.one_of(
        st.tuples(st.just("A"), st.tuples(*[st.integers(0, 255)] * 4).map(dnslib.A)),
        st.tuples(st.just("AAAA"), _IPV6.map(dnslib.AAAA)),
        st.tuples(st.sampled_from(["CNAME", "NS", "PTR"]), _NAMES.map(dnslib.CNAME)),
        st.tuples(st.just("MX"), st.builds(dnslib.MX, _NAMES, st.integers(0, 65535))),
        st.tuples(st.just("TXT"), _TXT_STRINGS.map(dnslib.TXT)),
        st.tuples(st.just("SOA"), st.builds(dnslib.SOA, _NAMES, _NAMES, times)))
    # types the fast path leaves to dnslib, less often (one in a message is enough)
    other = st.one_of(
        st.tuples(st.just("SRV"), st.builds(dnslib.SRV, st.integers(0, 9), st.integers(0, 9),
                                             st.integers(0, 65535), _NAMES)),
        st.tuples(st.just("HINFO"), st.binary(min_size=1, max_size=8).map(dnslib.RD)))
    return st.one_of(common, common, common, common, common, common, common, other)


_RRS = st.lists(st.tuples(_NAMES, _rdata_strategy(), st.integers(0, 2**32 - 1),
                          st.sampled_from([1, 1, 3, 255, 254])), max_size=6)


@st.composite
def dns_messages(draw) -> bytes:
    """Messages dnslib itself packs (with name compression), of every section and flag."""
    header = dnslib.DNSHeader(id=draw(st.integers(0, 65535)),
                              bitmap=draw(st.integers(0, 65535)))
    rec = dnslib.DNSRecord(header)
    for name in draw(st.lists(_NAMES, max_size=3)):
        rec.add_question(dnslib.DNSQuestion(name, draw(st.sampled_from([1, 28, 15, 255, 65280])),
                                            draw(st.sampled_from([1, 3, 255]))))
    for add, rrs in ((rec.add_answer, draw(_RRS)), (rec.add_auth, draw(_RRS)),
                     (rec.add_ar, draw(_RRS))):
        for name, (qtype, rdata), ttl, rclass in rrs:
            add(dnslib.RR(name, getattr(dnslib.QTYPE, qtype), rclass, ttl, rdata))
    for _ in range(draw(st.sampled_from([0, 1, 1, 2]))):  # a second OPT is dnslib's business
        opts = [dnslib.EDNSOption(code, data) for code, data in
                draw(st.lists(st.tuples(st.integers(0, 65535), st.binary(max_size=300)),
                              max_size=3))]
        rec.add_ar(dnslib.EDNS0(udp_len=draw(st.integers(0, 65535)),
                                ext_rcode=draw(st.integers(0, 255)),
                                flags=draw(st.sampled_from(["", "do"])), opts=opts))
    try:
        return rec.pack()
    except Exception:  # names dnslib cannot pack (e.g. over 253 bytes): try another
        from hypothesis import reject
        reject()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])
@given(dns_messages())
def test_fast_path_agrees_with_dnslib_on_generated_messages(data: bytes) -> None:
    assert_same_as_dnslib(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])
@given(dns_messages(), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                min_size=1, max_size=6),
       st.integers(0, 10_000), st.binary(max_size=8))
def test_fast_path_agrees_with_dnslib_on_mutated_messages(data: bytes, flips: list,
                                                          cut: int, tail: bytes) -> None:
    buf = bytearray(data)
    for pos, value in flips:
        buf[pos % len(buf)] = value
    assert_same_as_dnslib(bytes(buf[:max(cut, 12)]) + tail)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fast_path_agrees_with_dnslib_on_random_bytes(data: bytes) -> None:
    assert_same_as_dnslib(b"\x12\x34\x81\x80" + data[:8] + data[8:])
    assert_same_as_dnslib(data)


def _msg(counts: tuple[int, int, int, int], body: bytes, bits: int = 0x8180) -> bytes:
    import struct

    return struct.pack("!HHHHHH", 0x4242, bits, *counts) + body


Q_EXAMPLE = b"\x07example\x03com\x00\x00\x01\x00\x01"   # at offset 12


@pytest.mark.parametrize("data,answered", [
    # ordinary: a pointer back to the question name
    (_msg((1, 1, 0, 0), Q_EXAMPLE + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x04"), True),
    # pointer chain: www -> example.com
    (_msg((1, 1, 0, 0), Q_EXAMPLE + b"\x03www\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x02\xc0\x1d"), True),
    # a pointer to itself (a loop), and one pointing forwards
    (_msg((1, 0, 0, 0), b"\xc0\x0c\x00\x01\x00\x01"), False),
    (_msg((1, 0, 0, 0), b"\xc0\x20\x00\x01\x00\x01" + b"\x00" * 20), False),
    # two names pointing at each other
    (_msg((2, 0, 0, 0), b"\x01a\xc0\x14\x00\x01\x00\x01\x01b\xc0\x0c\x00\x01\x00\x01"), False),
    # label lengths with the reserved 01/10 top bits
    (_msg((1, 0, 0, 0), b"\x41" + b"a" * 65 + b"\x00\x00\x01\x00\x01"), False),
    # A with a 5-byte rdata: dnslib reads 4 and goes on from there
    (_msg((1, 1, 0, 0), Q_EXAMPLE + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x05\x01\x02\x03\x04\x05"), False),
    # CNAME whose name is shorter than its rdlength
    (_msg((1, 1, 0, 0), Q_EXAMPLE + b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x03\xc0\x0c\x00"), False),
    # empty rdata (dnslib: "Empty RR"), and an empty OPT (fine)
    (_msg((1, 1, 0, 0), Q_EXAMPLE + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x00"), False),
    (_msg((1, 0, 0, 1), Q_EXAMPLE + b"\x00\x00\x29\x10\x00\x01\x00\x80\x00\x00\x00"), True),
    # an OPT whose 4-byte tail dnslib ignores, and one whose option runs past the record
    (_msg((1, 0, 0, 1), Q_EXAMPLE + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x00"), True),
    (_msg((1, 0, 0, 1), Q_EXAMPLE + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x06\x00\x0a\x00\x09ab"), False),
    # OPT in the answer section
    (_msg((1, 1, 0, 0), Q_EXAMPLE + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"), False),
    # TXT: one string, a string running past the rdata, an empty rdata (dnslib: "Empty RR")
    (_msg((1, 1, 0, 0), Q_EXAMPLE + b"\xc0\x0c\x00\x10\x00\x01\x00\x00\x00\x3c\x00\x03\x02ab"), True),
    (_msg((1, 1, 0, 0), Q_EXAMPLE + b"\xc0\x0c\x00\x10\x00\x01\x00\x00\x00\x3c\x00\x02\x02a"), False),
    (_msg((1, 1, 0, 0), Q_EXAMPLE + b"\xc0\x0c\x00\x10\x00\x01\x00\x00\x00\x3c\x00\x00"), False),
    # labels dnslib escapes, and one it refuses (not UTF-8)
    (_msg((1, 0, 0, 0), b"\x03a b\x02\x00\x7f\x04\xc3\xa9\xc3\xa9\x00\x00\x01\x00\x01"), True),
    (_msg((1, 0, 0, 0), b"\x02\xff\xfe\x00\x00\x01\x00\x01"), False),
    # more records announced than present, and trailing junk after a complete message
    (_msg((1, 2, 0, 0), Q_EXAMPLE + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x04"), False),
    (_msg((1, 0, 0, 0), Q_EXAMPLE + b"junk"), True),
])
def test_fast_path_edge_cases(data: bytes, answered: bool) -> None:
    assert assert_same_as_dnslib(data) is answered
    # whichever decoder answered, parse_message says what dnslib says (or raises like it)
    try:
        ref = asdict(parse_message_dnslib(data))
    except Exception as exc:
        with pytest.raises(type(exc)):
            parse_message(data)
    else:
        assert asdict(parse_message(data)) == ref


def test_fast_path_ipv6_text_matches_dnslib_for_every_zero_pattern() -> None:
    import struct

    for mask in range(256):  # each of the 8 groups zero or not
        groups = [0 if mask & (1 << i) else 0x1234 + i for i in range(8)]
        rdata = struct.pack("!8H", *groups)
        data = _msg((1, 1, 0, 0), Q_EXAMPLE.replace(b"\x00\x01\x00\x01", b"\x00\x1c\x00\x01")
                    + b"\xc0\x0c\x00\x1c\x00\x01\x00\x00\x00\x3c\x00\x10" + rdata)
        assert assert_same_as_dnslib(data, must_answer=True)
