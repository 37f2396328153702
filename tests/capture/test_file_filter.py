"""``-f`` on capture files selects what tcpdump -r selects (issue 19, item 6).

The expression is compiled by libpcap for each link type of the file and run on every
record (``netdumplings.capture.bpf``); tcpdump itself is the reference: the records it writes with
``tcpdump -r FILE -w OUT EXPR`` are those the kitchen is given, for pcap and pcapng, every
link type, and stdin. An expression libpcap refuses is an error before anything is cooked.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import nd_command
from netdumplings.capture.bpf import FilterError, OfflineFilter
from netdumplings.capture.sources import CaptureError, PcapSource

DATA = Path(__file__).parent.parent / "data"
FOREIGN = DATA / "foreign"
needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")

FILTERS = ["tcp", "udp", "port 80", "arp", "vlan", "ip6", "mpls", "greater 200", "less 80",
           "tcp[tcpflags] & tcp-syn != 0", "host 10.0.0.1 or net 192.168.0.0/16"]
UNFILTERABLE = ("td_linktype_pktap.pcap", "zeek_nflog_http.pcap")
CAPTURES = sorted(FOREIGN.glob("*.pcap*")) + [DATA / n for n in (
    "dns-queries.pcap", "arp-veth.pcap", "http1-keepalive.pcap", "epics-ca.pcap")]


def tcpdump_records(pcap: Path, expression: str, tmp: Path) -> list[bytes] | None:
    """The records tcpdump passes (None: tcpdump refuses the expression for this file)."""
    out = tmp / "tcpdump.pcap"
    r = subprocess.run(["tcpdump", "-r", str(pcap), "-w", str(out), expression],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return None
    return [p.data for p in PcapSource(out)]


def our_records(pcap: Path | str, expression: str) -> list[bytes] | None:
    try:
        return [p.data for p in PcapSource(pcap, bpf_filter=expression)]
    except CaptureError:
        return None


@needs_tcpdump
@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.name)
def test_records_passed_are_tcpdumps(pcap: Path, tmp_path: Path) -> None:
    passed_some = False
    for expression in FILTERS:
        theirs = tcpdump_records(pcap, expression, tmp_path)
        assert our_records(pcap, expression) == theirs, expression
        passed_some = passed_some or bool(theirs)
    # libpcap (so tcpdump, and -f here) has no protocol filters for NFLOG and PKTAP:
    # "tcp" is refused for those two; the others pass something
    if pcap.name in UNFILTERABLE:
        assert our_records(pcap, "tcp") is None
    else:
        assert passed_some


def _pcapng(interfaces: list[int], packets: list[tuple[int, bytes]]) -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    for lt in interfaces:
        out += block(1, struct.pack("<HHI", lt, 0, 65535))
    for i, (ifid, data) in enumerate(packets):
        out += block(6, struct.pack("<IIIII", ifid, 0, 1_000_000 * (i + 1), len(data),
                                    len(data)) + data)
    return out


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_pcapng_interfaces_of_two_link_types(tmp_path: Path) -> None:
    # Ethernet and raw IP interfaces in one file, UDP and TCP on each: "udp" compiled
    # once per link type passes the UDP packet of each interface
    from scapy.layers.inet import IP, TCP, UDP
    udp = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=53))
    tcp = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1000, dport=80))
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    path = tmp_path / "two.pcapng"
    path.write_bytes(_pcapng([1, 101], [(0, eth + udp), (1, tcp), (1, udp), (0, eth + tcp)]))
    got = [(p.linktype, p.l4) for p in PcapSource(path, bpf_filter="udp")]
    assert got == [(1, "udp"), (101, "udp")]
    # (tcpdump's libpcap 1.10 refuses to read a pcapng whose interfaces differ in link
    # type; tshark reads it, and its capture-filter-equivalent display filter agrees)
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "udp", "-T", "fields", "-e",
                          "frame.number"], capture_output=True, text=True, timeout=60).stdout
    assert out.split() == ["1", "3"]


@needs_tcpdump
def test_bsd_loopback_ip6_is_compiled_for_the_file(tmp_path: Path) -> None:
    # a BSD loopback frame starts with the writer's AF_INET6 (30 on macOS, 28 FreeBSD, 24
    # NetBSD/OpenBSD): libpcap tests every BSD value for a file, only this host's (10)
    # for a dead handle, which would pass none of a Mac's IPv6 packets
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    v6 = bytes(IPv6(src="::1", dst="::1") / UDP(sport=1, dport=2))
    v4 = bytes(IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=1, dport=2))
    frames = [struct.pack("<I", af) + (v6 if af != 2 else v4) for af in (30, 2, 28, 24)]
    path = tmp_path / "loop.pcap"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 0))
        for i, f in enumerate(frames):
            fh.write(struct.pack("<IIII", i, 0, len(f), len(f)) + f)
    ours = our_records(path, "ip6")
    assert ours == tcpdump_records(path, "ip6", tmp_path)
    assert ours is not None and len(ours) == 3


def test_invalid_expression_is_an_error_naming_it() -> None:
    with pytest.raises(CaptureError, match=r"invalid filter 'tcp port'.*syntax error"):
        PcapSource(DATA / "dns-queries.pcap", bpf_filter="tcp port")
    with pytest.raises(FilterError):
        OfflineFilter("udp and").check(1)


def test_link_type_libpcap_cannot_filter_is_an_error_as_in_tcpdump() -> None:
    with pytest.raises(CaptureError, match="NFLOG"):
        PcapSource(FOREIGN / "zeek_nflog_http.pcap", bpf_filter="tcp")


def test_read_dumplings_applies_bpf_filter() -> None:
    from netdumplings.kitchen.offline import read_dumplings
    pcap = DATA / "dns-queries.pcap"
    every = [d for d in read_dumplings(pcap, ["DNSLookupChef"]) if "event" in d["payload"]]
    one = [d["payload"] for d in read_dumplings(pcap, ["DNSLookupChef"],
                                                bpf_filter="udp port 35301")
           if "event" in d["payload"]]
    assert len(every) > 1
    assert [(p["event"], p["flow"]["client"]) for p in one] == [("lookup", "127.0.0.1:35301")]


def _run(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(nd_command("nd-sniff") + args, input=stdin, capture_output=True,
                          timeout=60)


@pytest.mark.parametrize("from_stdin", [False, True], ids=["file", "stdin"])
def test_nd_sniff_cooks_only_what_the_filter_passes(from_stdin: bool) -> None:
    pcap = DATA / "dns-queries.pcap"
    args = ["--print", "-c", "PacketCountChef", "-r", "-" if from_stdin else str(pcap)]
    every = _run(args, pcap.read_bytes() if from_stdin else None)
    only_arp = _run(args + ["-f", "arp"], pcap.read_bytes() if from_stdin else None)
    assert every.returncode == only_arp.returncode == 0, only_arp.stderr
    import json
    counts = [json.loads(line.splitlines()[-1])["payload"]["packet_counts"]
              for line in (every.stdout.decode(), only_arp.stdout.decode())]
    assert counts[0].get("UDP", 0) > 0
    assert "UDP" not in counts[1] and "IP" not in counts[1]


@pytest.mark.parametrize("from_stdin", [False, True], ids=["file", "stdin"])
def test_nd_sniff_invalid_filter_on_a_file_is_an_error(from_stdin: bool) -> None:
    pcap = DATA / "dns-queries.pcap"
    r = _run(["--print", "-r", "-" if from_stdin else str(pcap), "-f", "udp and"],
             pcap.read_bytes() if from_stdin else None)
    err = r.stderr.decode()
    assert r.returncode != 0
    assert "invalid filter 'udp and'" in err and "Traceback" not in err
    assert r.stdout == b""
