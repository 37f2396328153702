"""netdumplings 0.5's chefs (``netdumplings.dumplingchefs``): 0.5's attributes and payload
shapes, given plain scapy packets (as 0.5's tests and users' tests do) and the kitchen's
packets (from real captures), and run by ``nd-sniff -m netdumplings.dumplingchefs``.

Docstrings name the netdumplings 0.5.1 test whose behaviour each test checks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from scapy.all import ARP, DNS, DNSQR, IP, TCP, UDP, Ether, Raw, rdpcap

from conftest import DATA, assert_no_traceback, cook, run_nd
from netdumplings.dumplingchefs import ARPChef, DNSLookupChef, PacketCountChef
from test_compat05 import nd05  # noqa: F401 (fixture: netdumplings 0.5.1 from PyPI, once)

DNS_PCAP = DATA / "dns-queries.pcap"
ARP_PCAP = DATA / "arp-veth.pcap"


def _payloads(dumplings, chef, driver=None):
    return [d["payload"] for d in dumplings if d["metadata"]["chef"] == chef
            and (driver is None or d["metadata"]["driver"] == driver)]


# -- ARPChef ---------------------------------------------------------------------------


def test_arp_chef_starts_with_no_table():
    """0.5: test_arpchef.py::test_init"""
    assert ARPChef().ip_mac == {}


def _arp_payload(arp, notes):
    return {"operation": {1: "request", 2: "reply"}[arp.op], "src_hw": arp.hwsrc,
            "src_ip": arp.psrc, "dst_hw": arp.hwdst, "dst_ip": arp.pdst,
            "time": arp.time, "notes": notes}


def test_arp_request():
    """0.5: test_arpchef.py::test_packet_handler_arp_request"""
    packet = Ether() / ARP(op="who-has", psrc="10.0.0.1", pdst="10.0.0.2")
    chef = ARPChef()
    assert chef.packet_handler(packet) == _arp_payload(packet[ARP], None)
    assert chef.ip_mac == {}


def test_arp_reply_from_a_new_device():
    """0.5: test_arpchef.py::test_packet_handler_arp_reply_new_device"""
    packet = Ether() / ARP(op="is-at", psrc="10.0.0.9", hwsrc="02:00:00:00:00:09")
    chef = ARPChef()
    assert chef.packet_handler(packet) == _arp_payload(packet[ARP], "source device is new")
    assert chef.ip_mac == {"10.0.0.9": "02:00:00:00:00:09"}


def test_arp_reply_with_a_new_mac_for_a_known_ip():
    """0.5: test_arpchef.py::test_packet_handler_arp_reply_new_ip"""
    packet = Ether() / ARP(op="is-at", psrc="10.0.0.9", hwsrc="02:00:00:00:00:09")
    chef = ARPChef()
    chef.ip_mac = {"10.0.0.9": "02:00:00:00:00:01"}
    assert chef.packet_handler(packet) == _arp_payload(
        packet[ARP], "source device has new IP address")
    assert chef.ip_mac == {"10.0.0.9": "02:00:00:00:00:09"}
    # the same answer again is nothing new
    assert chef.packet_handler(packet)["notes"] is None


def test_arp_chef_ignores_other_packets():
    """0.5: test_arpchef.py::test_ignore_non_arp_packets"""
    chef = ARPChef()
    assert chef.packet_handler(IP(dst="10.1.1.1") / TCP(dport=80) / Raw(b"test")) is None
    assert chef.ip_mac == {}


def test_arp_chef_on_the_kitchens_packets_matches_scapy_packets():
    """A real capture through the kitchen gives what the same frames give as scapy packets
    (the kitchen's packets carry the capture time, so 'time' is the packet's)."""
    dumplings, _ = cook(ARP_PCAP, [ARPChef])
    through_kitchen = _payloads(dumplings, "ARPChef")
    chef = ARPChef()
    by_hand = [p for p in (chef.packet_handler(pkt) for pkt in rdpcap(str(ARP_PCAP))) if p]
    assert len(through_kitchen) == len(by_hand) >= 5
    for ours, scapy_made in zip(through_kitchen, by_hand):
        assert ours == {**scapy_made, "time": pytest.approx(float(scapy_made["time"]))}
    assert [p["notes"] for p in through_kitchen].count("source device is new") == 1
    assert {p["operation"] for p in through_kitchen} == {"request", "reply"}


# -- DNSLookupChef --------------------------------------------------------------------


def test_dns_chef_starts_with_no_lookups():
    """0.5: test_dnslookupchef.py::test_init"""
    assert DNSLookupChef().lookups_seen == {}


@pytest.mark.parametrize("asked", ["www.apple.com", "www.apple.com."])
def test_dns_lookup(asked):
    """0.5: test_dnslookupchef.py::test_packet_handler and ::test_stripping_trailing_period"""
    packet = UDP() / DNS(rd=1, qd=DNSQR(qname=asked))
    chef = DNSLookupChef()
    before = time.time()
    payload = chef.packet_handler(packet)
    when = payload["lookup"]["when"]
    assert before <= when <= time.time()
    assert payload == {"lookup": {"hostname": "www.apple.com", "when": when}}
    assert chef.lookups_seen == {"www.apple.com": {"count": 1, "latest": when}}
    chef.packet_handler(packet)
    assert chef.lookups_seen["www.apple.com"]["count"] == 2


def test_dns_chef_ignores_other_packets():
    """0.5: test_dnslookupchef.py::test_ignore_non_dns_packets"""
    chef = DNSLookupChef()
    assert chef.packet_handler(IP(dst="10.1.1.1") / TCP(dport=80) / Raw(b"test")) is None
    assert chef.packet_handler(Ether() / IP() / UDP(sport=5000, dport=6000) / Raw(b"x")) is None
    assert chef.lookups_seen == {}


def test_dns_interval_dumpling_is_the_tally():
    """0.5: test_dnslookupchef.py::test_interval_handler"""
    chef = DNSLookupChef()
    assert chef.interval_handler() == {"lookups_seen": {}}
    chef.packet_handler(UDP() / DNS(qd=DNSQR(qname="a.example.")))
    assert chef.interval_handler() == {"lookups_seen": chef.lookups_seen}
    assert list(chef.lookups_seen) == ["a.example"]


def test_dns_chef_on_a_real_capture():
    """Through the kitchen: one lookup dumpling per DNS message (0.5 counted queries and
    responses alike), and the tally at the end, keyed by hostname."""
    dumplings, _ = cook(DNS_PCAP, [DNSLookupChef])
    lookups = [p["lookup"] for p in _payloads(dumplings, "DNSLookupChef", "packet")]
    by_hand = [p["lookup"]["hostname"] for p in map(DNSLookupChef().packet_handler,
                                                    rdpcap(str(DNS_PCAP))) if p]
    assert [lk["hostname"] for lk in lookups] == by_hand and len(by_hand) == 12
    tally = _payloads(dumplings, "DNSLookupChef", "interval")[-1]["lookups_seen"]
    assert sum(v["count"] for v in tally.values()) == 12
    assert all(not host.endswith(".") for host in tally)
    # 'when' is each packet's capture time
    captured = [d["metadata"]["capture_time"] for d in dumplings
                if d["metadata"]["driver"] == "packet"]
    assert [lk["when"] for lk in lookups] == captured


# -- PacketCountChef ------------------------------------------------------------------


def test_packet_count_chef_starts_empty():
    """0.5: test_packetcountchef.py::test_init"""
    chef = PacketCountChef()
    assert chef.packet_counts == {} and chef.poke_count == 0


def test_packet_counts_per_layer():
    """0.5: test_packetcountchef.py::test_packet_handler"""
    chef = PacketCountChef()
    for packet in (IP(dst="10.1.1.1") / TCP(dport=80) / Raw(b"Some raw bytes"),
                   Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="192.168.1.0/24"),
                   IP(dst="10.2.2.2") / TCP(dport=80) / Raw(b"More raw bytes")):
        assert chef.packet_handler(packet) is None
    assert chef.packet_counts == {"ARP": 1, "Ethernet": 1, "IP": 2, "Raw": 2, "TCP": 2}


def test_packet_count_interval_dumpling():
    """0.5: test_packetcountchef.py::test_interval_handler"""
    chef = PacketCountChef()
    assert chef.interval_handler() == {"packet_counts": chef.packet_counts} == {
        "packet_counts": {}}


@pytest.mark.parametrize("capture", [DNS_PCAP, ARP_PCAP])
def test_packet_counts_from_the_kitchen_match_scapys(capture):
    """The kitchen's packets are counted without dissecting them, with scapy's names."""
    dumplings, _ = cook(capture, [PacketCountChef])
    ours = _payloads(dumplings, "PacketCountChef")[-1]["packet_counts"]
    chef = PacketCountChef()
    for pkt in rdpcap(str(capture)):
        chef.packet_handler(pkt)
    assert ours == chef.packet_counts


# -- nd-sniff -------------------------------------------------------------------------


def test_nd_sniff_runs_05s_chefs(procs):
    """``nd-sniff -m netdumplings.dumplingchefs`` runs the three 0.5 chefs with 0.5's
    payloads (nd-sniff's 0.5 default), quietly: they are meant to replace today's."""
    rc, p = run_nd(procs, "nd-sniff", "-r", str(DNS_PCAP), "-m",
                   "netdumplings.dumplingchefs", "--print")
    assert rc == 0, p.err
    assert_no_traceback(p)
    dumplings = [json.loads(line) for line in p.out]
    assert {d["metadata"]["chef"] for d in dumplings} == {"DNSLookupChef", "PacketCountChef"}
    assert len(_payloads(dumplings, "DNSLookupChef", "packet")) == 12
    assert all(set(p) == {"lookup"} for p in _payloads(dumplings, "DNSLookupChef", "packet"))
    assert set(_payloads(dumplings, "DNSLookupChef", "interval")[-1]) == {"lookups_seen"}
    assert _payloads(dumplings, "PacketCountChef")[-1] == {
        "packet_counts": {"Ethernet": 12, "IP": 12, "UDP": 12, "DNS": 12}}
    assert not any("WARNING" in line for line in p.err), p.err
    rc, p = run_nd(procs, "nd-sniff", "-l", "-m", "netdumplings.dumplingchefs")
    assert rc == 0 and all(name in "\n".join(p.out) for name in
                           ("ARPChef", "DNSLookupChef", "PacketCountChef"))


# -- netdumplings 0.5.1's own chef modules, unchanged, in our kitchen ---------------------


def _nd_sniff_payloads(procs, capture, chef_file, chef):
    rc, p = run_nd(procs, "nd-sniff", "-r", str(capture), "-m", str(chef_file), "-c", chef,
                   "--print")
    assert rc == 0, p.err
    return [json.loads(line) for line in p.out], p


def test_05s_own_chefs_run_in_our_kitchen(nd05, procs):
    """The files of 0.5.1's netdumplings/dumplingchefs, as installed from PyPI, run by our
    nd-sniff: ARPChef and PacketCountChef make exactly what our 0.5 chefs make; 0.5's
    DNSLookupChef needs the DNS.qd change (docs/migration.md) and says so."""
    (chefs_dir,) = (nd05.parent / "lib").glob("python*/site-packages/netdumplings/dumplingchefs")
    theirs, _ = _nd_sniff_payloads(procs, ARP_PCAP, chefs_dir / "arpchef.py", "ARPChef")
    ours, _ = cook(ARP_PCAP, [ARPChef])
    assert [d["payload"] for d in theirs] == _payloads(ours, "ARPChef") and len(theirs) >= 5
    for capture in (DNS_PCAP, ARP_PCAP):
        theirs, _ = _nd_sniff_payloads(procs, capture, chefs_dir / "packetcountchef.py",
                                       "PacketCountChef")
        ours, _ = cook(capture, [PacketCountChef])
        assert theirs[-1]["payload"] == _payloads(ours, "PacketCountChef")[-1]
    theirs, p = _nd_sniff_payloads(procs, DNS_PCAP, chefs_dir / "dnslookupchef.py",
                                   "DNSLookupChef")
    assert [d["payload"] for d in theirs] == [{"lookups_seen": {}}]
    assert any("'list' object has no attribute 'qname'" in line for line in p.err)
    assert any("12 chef errors (DNSLookupChef 12)" in line for line in p.err), p.err


def test_readme_chef_with_the_qd_change_still_runs_on_05(nd05, tmp_path):
    """docs/migration.md's one change to 0.5's README chef (``fields['qd'][0]``) also runs
    with netdumplings 0.5.1 and the scapy it installs (2.4), so one file serves both."""
    import subprocess
    chef_file = Path(__file__).parent.parent / "chefmods" / "readme05_chefs.py"
    code = ("import importlib.util, json, sys, scapy; "
            "from scapy.all import DNS, DNSQR, IP, UDP; "
            "spec = importlib.util.spec_from_file_location('readme05', sys.argv[1]); "
            "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); "
            "chef = mod.DNSLookupChef(); "
            "pkt = IP(bytes(IP() / UDP(dport=53) / DNS(rd=1, qd=DNSQR(qname='www.example.com')))); "
            "print(json.dumps([scapy.__version__, mod.netdumplings.__version__, "
            "chef.packet_handler(pkt)['lookup']]))")
    # not from the checkout, whose netdumplings would shadow 0.5.1's
    out = subprocess.run([str(nd05 / "python"), "-c", code, str(chef_file)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    scapy_version, nd_version, lookup = json.loads(out.stdout)
    assert scapy_version.startswith("2.4") and nd_version == "0.5.1"
    assert lookup["hostname"] == "www.example.com."
