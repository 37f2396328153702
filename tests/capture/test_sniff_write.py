"""``nd-sniff -w FILE``: the packets a kitchen reads also go to a pcap/pcapng file, as
tcpdump -w writes them, while the chefs run: from a file (records identical to the
source), from stdin, from live capture on lo, in nanoseconds, and with write errors that
stop the writing but not the kitchen."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DATA, free_port, nanosecond_copy, needs_capture, nd_command

from netdumplings.capture.sources import PcapSource

HTTP = DATA / "http1-keepalive.pcap"


def records(path: Path) -> list[tuple]:
    src = PcapSource(path)
    try:
        return [(p.time, getattr(p, "time_ns", None), p.data, p.wirelen, p.linktype)
                for p in src]
    finally:
        src.close()


def _run(procs, *args: str, timeout: float = 60, **kw):
    p = procs(nd_command("nd-sniff") + list(args), **kw)
    return p.wait(timeout), p


@pytest.mark.parametrize("name", ["out.pcap", "out.pcapng"])
def test_file_to_file_keeps_every_record(procs, tmp_path, name):
    out = tmp_path / name
    rc, p = _run(procs, "-r", str(HTTP), "-c", "Http1Chef", "--print", "-w", str(out))
    assert rc == 0, p.err
    assert records(out) == records(HTTP)
    assert out.read_bytes()[:4] == (b"\x0a\x0d\x0d\x0a" if name.endswith("ng")
                                     else b"\xd4\xc3\xb2\xa1")
    # the chefs ran as without -w
    rc, q = _run(procs, "-r", str(HTTP), "-c", "Http1Chef", "--print")
    strip = [{k: v for k, v in json.loads(line).items() if k != "metadata"} for line in p.out]
    assert strip == [{k: v for k, v in json.loads(line).items() if k != "metadata"}
                     for line in q.out] and strip
    assert any(f"{len(records(HTTP))} written to {out}" in line for line in p.err), p.err
    # another reader agrees
    tshark = subprocess.run(["tshark", "-r", str(out)], capture_output=True, timeout=60)
    assert tshark.returncode == 0 and len(tshark.stdout.splitlines()) == len(records(HTTP))


def test_stdin_to_stdout(tmp_path):
    """``-r - -w -``: a pcap stream in, the same packets as a pcap stream out."""
    cmd = nd_command("nd-sniff") + ["-r", "-", "-w", "-", "-c", "PacketCountChef",
                                    "--hub", "127.0.0.1:1", "--flush-timeout", "0", "-q"]
    done = subprocess.run(cmd, input=HTTP.read_bytes(), capture_output=True, timeout=60)
    (tmp_path / "back.pcap").write_bytes(done.stdout)
    assert records(tmp_path / "back.pcap") == records(HTTP)


def test_nanoseconds_survive(procs, tmp_path):
    src = tmp_path / "ns.pcap"
    nanosecond_copy(DATA / "fluentd-segmented.pcap", src)
    out = tmp_path / "out.pcap"
    rc, p = _run(procs, "-r", str(src), "-c", "PacketCountChef", "--print", "--nano",
                 "-w", str(out))
    assert rc == 0, p.err
    assert out.read_bytes()[24:] == src.read_bytes()[24:]   # every record header and byte
    # without --nano: microseconds, as tcpdump writes by default
    rc, p = _run(procs, "-r", str(src), "-c", "PacketCountChef", "--print", "-w",
                 str(tmp_path / "us.pcap"))
    assert [r[0] for r in records(tmp_path / "us.pcap")] == pytest.approx(
        [r[0] for r in records(src)], abs=1e-6)


def test_write_errors_stop_the_writing_not_the_chefs(procs, tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    rc, p = _run(procs, "-r", str(HTTP), "-c", "Http1Chef", "--print", "-w", "/dev/full")
    assert rc == 1
    assert any("-w /dev/full: writing stopped" in line and "No space left" in line
               for line in p.err), p.err
    assert len(p.out) >= 3   # the transactions were still cooked and printed
    assert not any("Traceback" in line for line in p.err)


def test_bad_combinations(procs, tmp_path):
    for args, message in (
            (("-w", "-", "--print"), "-w - and --print would both write to stdout"),
            (("-w", str(tmp_path / "nodir" / "x.pcap"), "--print"), "no such directory"),
            (("-w", str(tmp_path), "--print"), "it is a directory"),
            (("--nano", "--print"), "--nano is for -w")):
        rc, p = _run(procs, "-r", str(HTTP), *args)
        assert rc in (1, 2) and any(message in line for line in p.err), (args, p.err)
        assert not p.out


@needs_capture
def test_live_capture_is_written_once_per_packet(procs, tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    out = tmp_path / "live.pcapng"
    p = procs(nd_command("nd-sniff") + ["-i", "lo", "-f", f"udp port {port}", "-c",
                                        "PacketCountChef", "--print", "-w", str(out), "--nano",
                                        "-p", "0", "-v"])
    p.wait_line("sniffing", timeout=15)
    time.sleep(0.3)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(50):
            s.sendto(b"nd-w-%03d" % i, ("127.0.0.1", port))
            time.sleep(0.002)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:   # flushed every 256 packets or when idle
        if out.exists() and len(records(out)) >= 50:
            break
        time.sleep(0.1)
    p.p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0, p.err
    got = records(out)
    assert [r[2][-8:] for r in got] == [b"nd-w-%03d" % i for i in range(50)]
    assert all(r[1] is not None for r in got)   # --nano: live nanoseconds kept...
    times = [r[0] for r in got]
    assert times == sorted(times)                # ... in capture order
    assert any("50 written to" in line for line in p.err), p.err
