"""Wire compatibility with the published netdumplings 0.5.1 (its own venv, its own processes).

0.5's kitchen sees every packet twice on lo (it does not drop outgoing copies): that is its
bug, so tests of its kitchen check "every packet at least once", not "exactly once".
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, free_port, needs_capture, nd_command, wait_port

ROOT = Path(__file__).resolve().parents[2]
VENV05 = ROOT / ".venv-nd05"
OLD_CHEFS = str(Path(__file__).parent.parent / "chefmods" / "old_style_chefs.py")
EATER05 = str(Path(__file__).parent / "eater05.py")


@pytest.fixture(scope="session")
def nd05() -> Path:
    """A venv with netdumplings 0.5.1 (websockets 10.4 forced: 0.5.1 pins 8.1, which does not
    run on Python 3.11). Made once and kept in .venv-nd05."""
    bin_dir = VENV05 / "bin"
    if not (bin_dir / "nd-hub").exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV05)], check=True)
            pip = [str(bin_dir / "python"), "-m", "pip", "install", "-q",
                   "--disable-pip-version-check"]
            subprocess.run(pip + ["netdumplings==0.5.1"], check=True, timeout=600)
            subprocess.run(pip + ["--no-deps", "websockets==10.4"], check=True, timeout=600)
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"cannot install netdumplings 0.5.1: {exc}")
        site = subprocess.run([str(bin_dir / "python"), "-c",
                               "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        Path(site, "sitecustomize.py").write_text(
            "import websockets.client, websockets.server  # noqa: F401 (0.5.1 expects these)\n")
    return bin_dir


def _lines(proc) -> list[dict]:
    return [json.loads(line) for line in proc.out if line.startswith("{")]


def test_our_kitchen_and_eater_with_their_hub(nd05, procs):
    """Our nd-sniff -> 0.5 nd-hub -> our nd-print and 0.5's DumplingEater."""
    in_port, out_port = free_port(), free_port()
    hub = procs([str(nd05 / "nd-hub"), "--in-port", str(in_port), "--out-port", str(out_port)])
    wait_port(in_port)
    wait_port(out_port)
    ours = procs(nd_command("nd-print") + ["--hub", f"127.0.0.1:{out_port}", "--json",
                                           "--count", "7", "--no-reconnect"])
    theirs = procs([str(nd05 / "python"), EATER05, f"localhost:{out_port}", "7",
                    "DNSLookupChef"])
    ours.wait_line("connected to")
    theirs.wait_line("connected")
    kitchen = procs(nd_command("nd-sniff") + ["-r", str(DATA / "dns-queries.pcap"), "-c",
                                              "DNSLookupChef", "-n", "ours",
                                              "--hub", f"127.0.0.1:{in_port}"])
    assert kitchen.wait(30) == 0, kitchen.err
    assert ours.wait(20) == 0 and theirs.wait(20) == 0
    a, b = _lines(ours), _lines(theirs)
    assert len(a) == len(b) == 7
    assert [d["payload"] for d in a] == [d["payload"] for d in b]
    assert {d["metadata"]["kitchen"] for d in a} == {"ours"}
    # 0.5's hub saw our hello as a 0.5 hello (its log names the kitchen).
    hub.kill()
    assert any("kitchen connection from ours" in line for line in hub.err)


@needs_capture
def test_their_kitchen_and_eater_with_our_hub(nd05, hub_process, procs):
    """0.5 nd-sniff (live on lo, a 0.5-style chef) -> our nd-hub -> 0.5 nd-print-style eater
    and our nd-print; also 0.5's own nd-print CLI."""
    in_port, out_port, hub = hub_process(status_freq=0.5)
    ours = procs(nd_command("nd-print") + ["--hub", f"127.0.0.1:{out_port}", "--json",
                                           "--chef", "OldUdpChef", "--no-reconnect"])
    theirs = procs([str(nd05 / "python"), EATER05, f"localhost:{out_port}", "1000",
                    "OldUdpChef"])
    their_print = procs([str(nd05 / "nd-print"), "--hub", f"localhost:{out_port}",
                         "--chef", "OldUdpChef"])
    ours.wait_line("connected to")
    theirs.wait_line("connected")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        kitchen = procs([str(nd05 / "nd-sniff"), "--kitchen-name", "old-kitchen", "--hub",
                         f"localhost:{in_port}", "--interface", "lo", "--filter",
                         f"udp port {port}", "--chef-module", OLD_CHEFS, "--chef", "OldUdpChef",
                         "--poke-interval", "1"])
        # Wait until its capture runs (bounded): probe packets until one comes through.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("probe" in line for line in ours.out):
            s.sendto(b"probe", ("127.0.0.1", port))
            time.sleep(0.2)
        assert any("probe" in line for line in ours.out), kitchen.err[-10:]
        sent = [f"old {i}" for i in range(20)]
        for text in sent:
            s.sendto(text.encode(), ("127.0.0.1", port))
            time.sleep(0.005)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            loads = {d["payload"].get("load") for d in _lines(ours)}
            if set(sent) <= loads:
                break
            time.sleep(0.1)
    got = [d for d in _lines(ours) if d["metadata"]["driver"] == "packet"]
    loads = [d["payload"]["load"] for d in got]
    assert set(sent) <= set(loads)
    assert {d["metadata"]["kitchen"] for d in got} == {"old-kitchen"}
    time.sleep(1.5)  # an interval poke and a status dumpling
    their_loads = {d["payload"].get("load") for d in _lines(theirs)}
    assert set(sent) <= their_loads
    assert any(d["payload"] == {"poked": True} for d in _lines(ours))
    # Our hub lists the old kitchen with its 0.5 hello fields in status dumplings.
    st = procs(nd_command("nd-hubstatus") + ["--hub", f"127.0.0.1:{out_port}", "--once"])
    st.wait(15)
    assert "old-kitchen" in "\n".join(st.out)
    assert any("old 19" in line for line in their_print.out) or \
        any("OldUdpChef" in line for line in their_print.out), their_print.err[-5:]
    kitchen.kill()


def test_old_style_chef_runs_in_our_kitchen():
    """A chef that only knows scapy packets (haslayer, packet['UDP']) works unchanged."""
    from netdumplings.kitchen.offline import read_dumplings
    sys.path.insert(0, str(Path(OLD_CHEFS).parent))
    try:
        from old_style_chefs import OldUdpChef
    finally:
        sys.path.pop(0)
    got = list(read_dumplings(DATA / "dns-queries.pcap", [OldUdpChef]))
    packets = [d["payload"] for d in got if d["metadata"]["driver"] == "packet"]
    assert len(packets) == 12 and all(p["dport"] in (53,) or p["load"] for p in packets)
    assert got[-1]["payload"] == {"poked": True}
