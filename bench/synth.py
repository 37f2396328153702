"""Synthetic captures for the benchmark, built with struct (no scapy, no dnslib).

``mixed``: when the shared generator (``../shared/captures/bulk/make_bulk.py``) is not next
to the repository, a capture of the same kind: interleaved HTTP/1.1 keep-alive flows over
IPv4, binary TCP flows over IPv6, DNS over UDP (v4 and v6), syslog-like UDP and ARP.
``tcp_heavy``: HTTP/1.1 keep-alive connections answering large bodies in full-size segments,
for reassembly throughput (a stream chef's MB/s).

Both are deterministic for a given seed and packet count. Checksums are left zero: nothing in
the kitchen (nor scapy's dissection) checks them.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Iterator

FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16
_ETH_IP4, _ETH_IP6, _ETH_ARP = b"\x08\x00", b"\x86\xdd", b"\x08\x06"


class _Host:
    __slots__ = ("mac", "ip", "raw", "v6")

    def __init__(self, mac: bytes, ip: str, v6: bool) -> None:
        import ipaddress

        self.mac, self.ip, self.v6 = mac, ip, v6
        self.raw = ipaddress.ip_address(ip).packed


def _ip(src: _Host, dst: _Host, proto: int, l4: bytes, ident: int) -> bytes:
    if src.v6:
        hdr = struct.pack("!IHBB", 6 << 28, len(l4), proto, 64) + src.raw + dst.raw
        return dst.mac + src.mac + _ETH_IP6 + hdr + l4
    hdr = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(l4), ident & 0xFFFF, 0x4000, 64, proto, 0)
    return dst.mac + src.mac + _ETH_IP4 + hdr + src.raw + dst.raw + l4


def tcp(src: _Host, dst: _Host, sport: int, dport: int, seq: int, ack: int, flags: int,
        payload: bytes = b"", ident: int = 0) -> bytes:
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4,
                      flags, 65535, 0, 0)
    return _ip(src, dst, 6, hdr + payload, ident)


def udp(src: _Host, dst: _Host, sport: int, dport: int, payload: bytes, ident: int = 0) -> bytes:
    frame = _ip(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload,
                ident)
    return frame + b"\x00" * max(0, 60 - len(frame))  # Ethernet minimum size


def _dns_message(rng: random.Random, qid: int, answer: bool) -> bytes:
    name = b"".join(bytes([len(w)]) + w for w in
                    (rng.choice([b"steam", b"bun", b"tea", b"wonton"]) + str(qid % 97).encode(),
                     b"example")) + b"\x00"
    head = struct.pack("!HHHHHH", qid, 0x8180 if answer else 0x0100, 1, 1 if answer else 0, 0, 0)
    q = name + struct.pack("!HH", 1, 1)
    if not answer:
        return head + q
    return head + q + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes(
        [203, 0, 113, qid % 250 + 1])


def _hosts(rng: random.Random) -> dict[str, list[_Host]]:
    return {
        "c4": [_Host(bytes([2, 16, 0, 0, 0, i]), f"192.0.2.{i}", False) for i in range(2, 250)],
        "s4": [_Host(bytes([2, 32, 0, 0, 0, i]), f"198.51.100.{i}", False) for i in range(10, 40)],
        "c6": [_Host(bytes([2, 64, 0, 0, 0, i]), f"2001:db8:c::{i:x}", True) for i in range(1, 200)],
        "s6": [_Host(bytes([2, 80, 0, 0, 0, i]), f"2001:db8:5::{i:x}", True) for i in range(1, 20)],
        "r4": [_Host(b"\x02\x60\x00\x00\x00\x35", "198.51.100.53", False)],
        "r6": [_Host(b"\x02\x60\x00\x00\x06\x35", "2001:db8:53::53", True)],
    }


def _http_flow(rng: random.Random, h: dict, big: bool) -> Iterator[bytes]:
    c, s = rng.choice(h["c4"]), rng.choice(h["s4"])
    sport, dport = rng.randint(32768, 60999), 80
    cs, ss = rng.getrandbits(32), rng.getrandbits(32)
    yield tcp(c, s, sport, dport, cs, 0, SYN)
    yield tcp(s, c, dport, sport, ss, cs + 1, SYN | ACK)
    cs, ss = cs + 1, ss + 1
    yield tcp(c, s, sport, dport, cs, ss, ACK)
    for k in range(rng.randint(3, 40)):
        req = f"GET /menu/{k} HTTP/1.1\r\nHost: {s.ip}\r\n\r\n".encode()
        yield tcp(c, s, sport, dport, cs, ss, PSH | ACK, req)
        cs += len(req)
        blen = rng.randint(20000, 200000) if big else rng.randint(10, 900)
        resp = f"HTTP/1.1 200 OK\r\nContent-Length: {blen}\r\n\r\n".encode() + b"d" * blen
        for off in range(0, len(resp), 1448):
            seg = resp[off:off + 1448]
            yield tcp(s, c, dport, sport, ss, cs, ACK | (PSH if off + 1448 >= len(resp) else 0),
                      seg)
            ss += len(seg)
            if off // 1448 % 2 or off + 1448 >= len(resp):
                yield tcp(c, s, sport, dport, cs, ss, ACK)
    yield tcp(c, s, sport, dport, cs, ss, FIN | ACK)
    yield tcp(s, c, dport, sport, ss, cs + 1, FIN | ACK)
    yield tcp(c, s, sport, dport, cs + 1, ss + 1, ACK)


def _tcp6_flow(rng: random.Random, h: dict) -> Iterator[bytes]:
    c, s = rng.choice(h["c6"]), rng.choice(h["s6"])
    sport, dport = rng.randint(32768, 60999), 9000
    cs, ss = rng.getrandbits(32), rng.getrandbits(32)
    yield tcp(c, s, sport, dport, cs, 0, SYN)
    yield tcp(s, c, dport, sport, ss, cs + 1, SYN | ACK)
    cs, ss = cs + 1, ss + 1
    for _ in range(rng.randint(10, 100)):
        n = rng.randint(8, 700)
        yield tcp(c, s, sport, dport, cs, ss, PSH | ACK, rng.randbytes(n))
        cs += n
        yield tcp(s, c, dport, sport, ss, cs, ACK)
    yield tcp(c, s, sport, dport, cs, ss, RST | ACK)


def _dns_flow(rng: random.Random, h: dict, v6: bool) -> Iterator[bytes]:
    c, r = rng.choice(h["c6" if v6 else "c4"]), h["r6" if v6 else "r4"][0]
    sport = rng.randint(32768, 60999)
    for _ in range(rng.randint(20, 200)):
        qid = rng.randrange(65536)
        yield udp(c, r, sport, 53, _dns_message(rng, qid, False))
        yield udp(r, c, 53, sport, _dns_message(rng, qid, True))


def _syslog_flow(rng: random.Random, h: dict) -> Iterator[bytes]:
    c, s = rng.choice(h["c4"]), rng.choice(h["s4"])
    sport = rng.randint(32768, 60999)
    for i in range(rng.randint(20, 300)):
        yield udp(c, s, sport, 5140, f"<13>Nov 14 22:{i % 60:02d}:00 host app: order {i}".encode())


def _arp_flow(rng: random.Random, h: dict) -> Iterator[bytes]:
    a, b = rng.choice(h["c4"]), rng.choice(h["s4"])
    for _ in range(rng.randint(1, 30)):
        req = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + a.mac + a.raw + b"\0" * 6 + b.raw
        yield b"\xff" * 6 + a.mac + _ETH_ARP + req + b"\0" * 18
        rep = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + b.mac + b.raw + a.mac + a.raw
        yield a.mac + b.mac + _ETH_ARP + rep + b"\0" * 18


def write(path: Path, kind: str, packets: int, seed: int = 8) -> Path:
    """Write ``packets`` frames of capture ``kind`` ("mixed" or "tcp_heavy") to ``path``."""
    rng = random.Random(seed)
    h = _hosts(rng)
    if kind == "mixed":
        kinds = [(40, lambda: _http_flow(rng, h, False)), (20, lambda: _tcp6_flow(rng, h)),
                 (12, lambda: _dns_flow(rng, h, False)), (5, lambda: _dns_flow(rng, h, True)),
                 (8, lambda: _syslog_flow(rng, h)), (15, lambda: _arp_flow(rng, h))]
        parallel = 300
    elif kind == "tcp_heavy":
        kinds = [(1, lambda: _http_flow(rng, h, True))]
        parallel = 20
    else:
        raise ValueError(kind)
    weights = [k[0] for k in kinds]
    makers = [k[1] for k in kinds]
    active: list[Iterator[bytes]] = []
    t_us = 1_700_000_000 * 1_000_000
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb", buffering=1 << 22) as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        n = 0
        while n < packets:
            while len(active) < parallel:
                active.append(rng.choices(makers, weights)[0]())
            i = rng.randrange(len(active))
            frame = next(active[i], None)
            if frame is None:
                active[i] = active[-1]
                active.pop()
                continue
            t_us += rng.randint(1, 60)
            f.write(struct.pack("<IIII", t_us // 1_000_000, t_us % 1_000_000, len(frame),
                                len(frame)))
            f.write(frame)
            n += 1
    tmp.replace(path)
    return path
