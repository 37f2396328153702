"""Capture formats read as tcpdump/tshark read them: pcapng with several interfaces,
sections, byte orders and timestamp resolutions, Simple and obsolete Packet Blocks, blocks
that carry no packets; "modified" (Kuznetzov) pcap; gzip-compressed captures; the FCS
bits of a pcap link type; damage anywhere in a pcapng file gives a CaptureError with a
byte offset after every packet before it, the same from a file and from a stream."""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from netdumplings.capture.packet import NsPacket, Packet
from netdumplings.capture.sources import CaptureError, PcapSource

DATA = Path(__file__).parent.parent / "data"

# -- a small pcapng writer (pcapng spec: block = type, length, body, length) ---------------


def _opts(items, e):
    if not items:
        return b""
    out = b"".join(struct.pack(e + "HH", c, len(v)) + v + b"\0" * (-len(v) % 4)
                   for c, v in items)
    return out + struct.pack(e + "HH", 0, 0)


def _block(btype, body, e="<"):
    body += b"\0" * (-len(body) % 4)
    return struct.pack(e + "II", btype, len(body) + 12) + body + struct.pack(e + "I",
                                                                            len(body) + 12)


def shb(e="<", options=()):
    return _block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)
                  + _opts(options, e), e)


def idb(linktype, name=None, tsresol=None, tsoffset=None, snaplen=0, e="<"):
    o = []
    if name:
        o.append((2, name.encode()))
    if tsresol is not None:
        o.append((9, bytes([tsresol])))
    if tsoffset is not None:
        o.append((14, struct.pack(e + "q", tsoffset)))
    return _block(1, struct.pack(e + "HHI", linktype, 0, snaplen) + _opts(o, e), e)


def epb(ifid, ticks, data, wirelen=None, options=(), e="<"):
    return _block(6, struct.pack(e + "5I", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                                 len(data) if wirelen is None else wirelen)
                  + data + b"\0" * (-len(data) % 4) + _opts(options, e), e)


def spb(data, wirelen=None, e="<"):
    return _block(3, struct.pack(e + "I", len(data) if wirelen is None else wirelen) + data, e)


def obsolete_pb(ifid, ticks, data, e="<"):
    return _block(2, struct.pack(e + "HH4I", ifid, 0, ticks >> 32, ticks & 0xFFFFFFFF,
                                 len(data), len(data)) + data, e)


ETH = bytes.fromhex("ffffffffffff020000000001080045000021000100004011f9c57f0000017f000001"
                    "00350035000900007a")
IP = ETH[14:]
SLL = bytes.fromhex("00000304000600000000000000000800") + IP
SLL2 = bytes.fromhex("0800000000000001030406000000000000000000") + IP
T_NS = 1_795_415_645_123_456_789


def mixed(e="<"):
    """One section: seven interfaces (link types, names, resolutions 10^-6, 10^-9, 2^-20,
    10^-3 with if_tsoffset, 2^-30 with a negative offset, seconds) and blocks that carry
    no packet (name resolution, secrets, statistics, custom) between the packets."""
    out = shb(e, [(1, b"comment"), (4, b"test_capture_formats")])
    out += idb(1, "eth0", e=e)
    out += idb(113, "any", 9, e=e)
    out += idb(101, "tun0", 0x80 | 20, e=e)
    out += idb(276, "sll2", 3, 1000, e=e)
    out += idb(0, None, 6, e=e)
    out += idb(108, "lo0", 0x80 | 30, -5, e=e)
    out += idb(228, "ip4", 0, e=e)
    out += _block(4, struct.pack(e + "HH", 1, 8) + bytes([127, 0, 0, 1]) + b"lh\0\0"
                  + struct.pack(e + "HH", 0, 0), e)
    out += epb(0, T_NS // 1000, ETH, options=[(1, b"pkt"), (2, struct.pack(e + "I", 1))], e=e)
    out += epb(1, T_NS, SLL, e=e)
    out += epb(2, T_NS * 2**20 // 10**9, IP, e=e)
    out += epb(3, 1234567, SLL2, e=e)
    out += _block(10, struct.pack(e + "II", 0x544C534B, 4) + b"abcd", e)
    out += epb(4, T_NS // 1000, struct.pack("<I", 2) + IP, wirelen=133, e=e)
    out += epb(5, T_NS * 2**30 // 10**9, struct.pack(">I", 2) + IP, e=e)
    out += _block(5, bytes(12) + _opts([(4, struct.pack(e + "Q", 5))], e), e)
    out += _block(0xBAD, struct.pack(e + "I", 32473) + b"custom!!", e)
    out += _block(0x40000BAD, struct.pack(e + "I", 32473) + b"custom2!", e)
    out += epb(6, 1_795_415_645, IP, e=e)
    out += obsolete_pb(0, T_NS // 1000 + 1, ETH, e=e)
    return out


#: (time or time_ns, wirelen, linktype, interface) of ``mixed``'s packets
MIXED = [
    (T_NS // 1000 / 1e6, len(ETH), 1, "eth0"),
    (T_NS, len(SLL), 113, "any"),
    ((T_NS * 2**20 // 10**9) * 10**9 // 2**20, len(IP), 101, "tun0"),
    (1000 + 1234567 / 1000, len(SLL2), 276, "sll2"),
    (T_NS // 1000 / 1e6, 133, 0, None),
    (-5 * 10**9 + (T_NS * 2**30 // 10**9) * 10**9 // 2**30, len(IP) + 4, 108, "lo0"),
    (1_795_415_645.0, len(IP), 228, "ip4"),
    ((T_NS // 1000 + 1) / 1e6, len(ETH), 1, "eth0"),
]


def _summary(packets):
    return [(p.time_ns if isinstance(p, NsPacket) else p.time, p.wirelen, p.linktype,
             p.interface) for p in packets]


def _read(source):
    """(packets, error message or None)"""
    got = []
    try:
        for p in PcapSource(source):
            got.append(p)
    except CaptureError as exc:
        return got, str(exc)
    return got, None


@pytest.mark.parametrize("endian", ["<", ">"], ids=["little", "big"])
def test_pcapng_interfaces_resolutions_and_blocks(tmp_path, endian):
    path = tmp_path / "m.pcapng"
    path.write_bytes(mixed(endian))
    packets = list(PcapSource(path))
    assert _summary(packets) == MIXED
    assert [type(p) for p in packets] == [Packet, NsPacket, NsPacket, Packet, Packet, NsPacket,
                                          Packet, Packet]
    assert [p.data for p in packets] == [ETH, SLL, IP, SLL2, struct.pack("<I", 2) + IP,
                                         struct.pack(">I", 2) + IP, IP, ETH]
    # the same from a stream (stdin)
    assert _summary(PcapSource(io.BytesIO(path.read_bytes()))) == MIXED


def test_pcapng_sections_have_their_own_interfaces_and_byte_order(tmp_path):
    blob = mixed("<") + mixed(">") + shb("<") + idb(101, "x", 9) + epb(0, T_NS, IP)
    packets, err = _read(io.BytesIO(blob))
    assert err is None
    assert _summary(packets) == MIXED + MIXED + [(T_NS, len(IP), 101, "x")]


def test_pcapng_simple_packet_blocks_use_interface_0_and_its_snaplen():
    blob = shb() + idb(1, "eth0", snaplen=20) + spb(ETH[:20], wirelen=len(ETH))
    (p,) = PcapSource(io.BytesIO(blob))
    assert (p.data, p.wirelen, p.linktype, p.interface, p.time) == (ETH[:20], len(ETH), 1,
                                                                     "eth0", 0.0)
    # an SPB whose packet (wire length, no snaplen) does not fit its block: damaged
    blob = shb() + idb(1, "eth0") + spb(ETH) + spb(ETH, wirelen=len(ETH) + 50)
    packets, err = _read(io.BytesIO(blob))
    assert len(packets) == 1 and "byte offset 120" in err


@pytest.mark.parametrize("blob, offset", [
    (shb() + idb(1, "eth0") + epb(0, 1, ETH) + epb(3, 1, ETH), 136),   # no interface 3
    (shb() + epb(0, 1, ETH), 28),                                       # no interface at all
    (shb() + idb(1) + epb(0, 1, ETH)[:4] + b"\x0e\x00\x00\x00" + bytes(8), 48),  # bad length
    (shb() + idb(1) + epb(0, 1, ETH)[:-4] + b"\x00\x00\x00\x00", 48),   # lengths disagree
    (shb() + idb(1) + shb()[:8] + b"abcd" + bytes(16), 56),             # bad byte-order magic
], ids=["ifid", "no-idb", "length", "trailer", "bom"])
def test_pcapng_damage_is_a_capture_error_with_its_offset(blob, offset):
    packets, err = _read(io.BytesIO(blob))
    assert err is not None and f"byte offset {offset}" in err, err


def test_pcapng_cut_anywhere_in_the_last_block(tmp_path):
    """tshark: 'cut short in the middle of a packet' after the packets before; scapy's
    reader took a cut as the end of the file, silently."""
    blob = mixed("<")
    last = blob.rindex(obsolete_pb(0, T_NS // 1000 + 1, ETH))
    path = tmp_path / "cut.pcapng"
    for cut in range(last + 1, len(blob)):
        path.write_bytes(blob[:cut])
        packets, err = _read(path)
        assert len(packets) == 7 and err and f"byte offset {last}" in err, (cut, err)
        spackets, serr = _read(io.BytesIO(blob[:cut]))
        assert len(spackets) == 7 and serr.split(": ", 1)[1] == err.split(": ", 1)[1]
    path.write_bytes(blob[:last])
    packets, err = _read(path)
    assert len(packets) == 7 and err is None


def test_committed_pcapng_cut_short():
    blob = (DATA / "corrupt" / "dns-queries.pcapng").read_bytes()
    packets, err = _read(io.BytesIO(blob[:1500]))
    assert len(packets) == 8 and "truncated pcapng block at byte offset 1404" in err
    assert all(p.interface == "lo" and p.linktype == 1 for p in packets)


def _records(path):
    blob = path.read_bytes()
    off, out = 24, []
    while off < len(blob):
        sec, usec, caplen, wirelen = struct.unpack_from("<IIII", blob, off)
        out.append((sec, usec, blob[off + 16:off + 16 + caplen], wirelen))
        off += 16 + caplen
    return blob[:24], out


@pytest.mark.parametrize("endian", ["<", ">"])
def test_modified_kuznetzov_pcap(tmp_path, endian):
    """Magic a1b2cd34 (editcap -F modpcap): 24-byte record headers; tcpdump and tshark
    read it."""
    src = DATA / "dns-queries.pcap"
    head, recs = _records(src)
    _m, vmaj, vmin, zone, sig, snap, lt = struct.unpack("<IHHiIII", head)
    out = struct.pack(endian + "IHHiIII", 0xA1B2CD34, vmaj, vmin, zone, sig, snap, lt)
    for sec, usec, data, wirelen in recs:
        out += struct.pack(endian + "IIIIiHBx", sec, usec, len(data), wirelen, 1, 0x800, 0) + data
    path = tmp_path / "mod.pcap"
    path.write_bytes(out)
    want = [(p.data, p.time, p.wirelen, p.linktype) for p in PcapSource(src)]
    for source in (path, io.BytesIO(out)):
        assert [(p.data, p.time, p.wirelen, p.linktype) for p in PcapSource(source)] == want
    packets, err = _read(io.BytesIO(out[:-5]))
    assert len(packets) == len(want) - 1 and "byte offset" in err


def test_pcap_linktype_fcs_bits_are_not_the_link_type(tmp_path):
    blob = bytearray((DATA / "dns-queries.pcap").read_bytes())
    struct.pack_into("<I", blob, 20, 1 | 0x04000000 | (4 << 28))   # FCS length 4 present
    path = tmp_path / "fcs.pcap"
    path.write_bytes(bytes(blob))
    assert {p.linktype for p in PcapSource(path)} == {1}


@pytest.mark.parametrize("name", ["dns-queries.pcap", "corrupt/dns-queries.pcapng"])
def test_gzip_compressed_captures(tmp_path, name):
    src = DATA / name
    want = [(p.data, p.time, p.interface) for p in PcapSource(src)]
    packed = gzip.compress(src.read_bytes())
    path = tmp_path / "c.gz"
    path.write_bytes(packed)
    for source in (path, io.BytesIO(packed)):
        assert [(p.data, p.time, p.interface) for p in PcapSource(source)] == want
    # cut compressed data: the packets before, then a clear error
    packets, err = _read(io.BytesIO(packed[:len(packed) * 2 // 3]))
    assert 0 < len(packets) < len(want) and "gzip" in err and "byte offset" in err
    packets, err = _read(io.BytesIO(b"\x1f\x8b\x08\x00junkjunkjunk"))
    assert packets == [] and "damaged gzip" in err


def test_other_compressions_are_named():
    packets, err = _read(io.BytesIO(b"\x28\xb5\x2f\xfd" + bytes(20)))
    assert packets == [] and "compressed with zstd" in err


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed")
def test_pcapng_read_as_tshark_reads_it(tmp_path):
    path = tmp_path / "m.pcapng"
    path.write_bytes(mixed("<") + mixed(">"))
    r = subprocess.run(["tshark", "-r", str(path), "-T", "json", "-x"], capture_output=True,
                       text=True, timeout=60)
    theirs = []
    for p in json.loads(r.stdout):
        layers = p["_source"]["layers"]
        fr = layers["frame"]
        if "frame.cb_pen" in fr:   # tshark shows custom blocks as records: not packets
            continue
        raw = layers["frame_raw"]
        theirs.append((fr["frame.time_epoch"], int(fr["frame.len"]),
                       bytes.fromhex(raw[0] if isinstance(raw, list) else raw),
                       fr["frame.interface_id_tree"].get("frame.interface_name")))
    ours = []
    for p in PcapSource(path):
        ns = p.time_ns if isinstance(p, NsPacket) else round(p.time * 1e6) * 1000
        ours.append((f"{ns // 10**9}.{ns % 10**9:09d}", p.wirelen, p.data,
                     p.interface or "unknown"))
    assert ours == theirs
    assert re.search(r"\d", r.stdout)
