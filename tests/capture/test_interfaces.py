"""Capture on several interfaces (-i repeated) and on all of them, inside a network namespace
the test creates (a veth pair and lo), so no traffic leaves the machine."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import can_capture, nd_command

CHEFS_FILE = str(Path(__file__).parent.parent / "chefmods" / "udp_echo_chefs.py")

pytestmark = pytest.mark.skipif(not can_capture() or not shutil.which("ip"),
                                reason="needs root and iproute2")


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def netns():
    """Namespace A (where the kitchen runs: lo + nd-a) linked by a veth pair to B (nd-b)."""
    a, b = f"ndtest-a-{uuid.uuid4().hex[:6]}", f"ndtest-b-{uuid.uuid4().hex[:6]}"
    sh("ip", "netns", "add", a)
    sh("ip", "netns", "add", b)
    try:
        sh("ip", "-n", a, "link", "set", "lo", "up")
        sh("ip", "-n", a, "link", "add", "nd-a", "type", "veth", "peer", "name", "nd-b",
           "netns", b)
        sh("ip", "-n", a, "addr", "add", "192.168.213.1/24", "dev", "nd-a")
        sh("ip", "-n", b, "addr", "add", "192.168.213.2/24", "dev", "nd-b")
        sh("ip", "-n", a, "link", "set", "nd-a", "up")
        sh("ip", "-n", b, "link", "set", "nd-b", "up")
        yield a
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


SENDER = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for dst, label in (("127.0.0.1", "lo"), ("192.168.213.2", "veth")):
    for i in range(5):
        s.sendto(f"{label} {i}".encode(), (dst, 9999))
        time.sleep(0.01)
"""


def _sniff(procs, ns: str, *iface_args: str):
    p = procs(["ip", "netns", "exec", ns] + nd_command("nd-sniff") + [
        *iface_args, "-f", "udp port 9999", "-m", CHEFS_FILE, "-c", "InterfaceChef", "--print",
        "-v"])
    p.wait_line("sniffing")
    time.sleep(0.2)
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SENDER], check=True,
                   timeout=20)
    time.sleep(0.5)
    assert p.terminate() == 0
    return [json.loads(line)["payload"] for line in p.out if line.startswith("{")]


def _by_iface(got: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for g in got:
        out.setdefault(g["interface"], []).append(g["text"])
    return out


@pytest.mark.parametrize("iface_args", [("-i", "lo", "-i", "nd-a"), ()],
                         ids=["two-interfaces", "all-interfaces"])
def test_several_and_all_interfaces(netns, procs, iface_args):
    got = _by_iface(_sniff(procs, netns, *iface_args))
    # Each packet exactly once: lo's outgoing copies are dropped, nd-a's are the only ones.
    assert got == {"lo": [f"lo {i}" for i in range(5)],
                   "nd-a": [f"veth {i}" for i in range(5)]}
