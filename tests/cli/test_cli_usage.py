"""A user's mistakes with option values, addresses, --format, output files and Ctrl-C: each
gives one clear line and the right exit code at once, never a hang, a flood or a traceback."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from conftest import (DATA, free_port, needs_capture, nd_command, wait_port)
from conftest import assert_no_traceback as _no_traceback
from conftest import run_nd as _run

CHEFS_FILE = str(Path(__file__).parent.parent / "chefmods" / "udp_echo_chefs.py")
DNS = str(DATA / "dns-queries.pcap")


@pytest.mark.parametrize("args, message", [
    # Each of these used to hang, flood stdout, or end in a traceback.
    (("nd-sniff", "-r", DNS, "--print", "-p", "-1"), "-p/--poke-interval: must be at least 0"),
    (("nd-sniff", "-r", DNS, "--print", "--max-flows", "0"), "--max-flows: must be at least 1"),
    (("nd-sniff", "-r", DNS, "--outbox-mb", "0"), "--outbox-mb: must be greater than 0"),
    (("nd-sniff", "-r", DNS, "--print", "-s", "-5"), "-s/--snaplen: must be at least 0"),
    (("nd-sniff", "-r", DNS, "--print", "--flow-timeout", "nan"), "not a number"),
    (("nd-cook", "-p", "-1"), "-p/--poke-interval: must be at least 0"),
    (("nd-hub", "--in-port", "70000"), "-i/--in-port: must be at most 65535"),
    (("nd-hub", "--metrics-port", "-1"), "--metrics-port: must be at least 0"),
    (("nd-hub", "--status-freq", "-1"), "-f/--status-freq: must be at least 0"),
    (("nd-hub", "--max-queue", "0"), "--max-queue: must be at least 1"),
    (("nd-print", "--count", "0"), "--count: must be at least 1"),
    (("nd-sniff", "-r", DNS, "--print", "--count", "0"), "--count: must be at least 1"),
    (("nd-print", "--count", "x"), "--count: invalid int value: 'x'"),
])
def test_bad_option_values(procs, args, message):
    rc, p = _run(procs, *args, timeout=15)
    assert rc == 2, (rc, p.err)
    assert any(message in line for line in p.err), p.err
    assert not p.out
    _no_traceback(p)


@pytest.mark.parametrize("args", [
    ("nd-sniff", "-r", DNS, "--hub", "127.0.0.1:99999"),
    ("nd-print", "--hub", "127.0.0.1:99999", "--no-reconnect"),
    ("nd-dump", "-w", "-", "--hub", "127.0.0.1:99999", "--no-reconnect"),
    ("nd-hubstatus", "--hub", "127.0.0.1:99999", "--once"),
    ("nd-cook", "--publish", "127.0.0.1:0"),
    ("nd-web", "--hub", "127.0.0.1:99999", "--port", "0"),
])
def test_hub_port_out_of_range(procs, args):
    rc, p = _run(procs, *args, timeout=15)
    assert rc == 2, (rc, p.err)
    assert any("is not a port number (1-65535)" in line for line in p.err), p.err
    _no_traceback(p)


def test_missing_token_file(procs):
    for args in (("nd-print", "--token-file", "/nonexistent/token"),
                 ("nd-sniff", "-r", DNS, "--token-file", "/nonexistent/token")):
        rc, p = _run(procs, *args, timeout=15)
        assert rc == 2
        assert any("cannot read token file /nonexistent/token" in line for line in p.err), p.err
        _no_traceback(p)


def test_bad_format_string_stops_at_once(procs):
    """A --format typo used to turn every dumpling into a 'chef error' (nd-sniff, exit 0 with
    nothing printed) or a traceback at the first dumpling (nd-print)."""
    rc, p = _run(procs, "nd-sniff", "-r", DNS, "--print", "--format", "{payload[summary")
    assert rc == 2 and not p.out
    assert any("--format: bad format string" in line and "expected '}'" in line
               for line in p.err), p.err
    _no_traceback(p)
    rc, p = _run(procs, "nd-print", "--hub", f"127.0.0.1:{free_port()}", "--format", "{x!z}")
    assert rc == 2 and any("Unknown conversion specifier z" in line for line in p.err), p.err
    _no_traceback(p)


def test_format_failing_on_some_dumplings_is_counted(procs):
    # 'name' is text in lookups: the numeric spec fails there, not on the final
    # statistics dumpling (no 'name': printed as '-').
    rc, p = _run(procs, "nd-sniff", "-r", DNS, "--print", "-c", "DNSLookupChef",
                 "--format", "{payload[name]:05d}")
    assert rc == 0
    assert p.out == ["-"]
    err = "\n".join(p.err)
    assert "--format failed on a DNSLookupChef dumpling" in err
    assert "0 chef errors, 6 not printed (--format failed)" in err
    _no_traceback(p)


@pytest.mark.parametrize("what", ["/nonexistent/capture.pcap", "directory"])
def test_unopenable_capture_prints_no_dumplings(procs, tmp_path, what):
    """No capture, no end-of-capture statistics: they used to go out (to stdout or the hub)
    as if an empty capture had been read."""
    path = str(tmp_path) if what == "directory" else what
    rc, p = _run(procs, "nd-sniff", "-r", path, "--print")
    assert rc == 1
    assert p.out == []
    assert any(f"cannot open {path}" in line for line in p.err), p.err
    _no_traceback(p)


@needs_capture
def test_unknown_interface_prints_no_dumplings(procs):
    rc, p = _run(procs, "nd-sniff", "-i", "nosuchif0", "--print")
    assert rc == 1 and p.out == []
    _no_traceback(p)


def test_ctrl_c_while_waiting_for_the_hub(procs):
    """Ctrl-C during the end-of-file wait for an unreachable hub: stop waiting, report how
    many dumplings were not delivered, exit 1 (used to be a KeyboardInterrupt traceback)."""
    p = procs(nd_command("nd-sniff") + ["-r", DNS, "-c", "DNSLookupChef", "--hub",
                                        f"127.0.0.1:{free_port()}", "--flush-timeout", "60"])
    p.wait_line("not reachable")
    time.sleep(0.5)
    p.p.send_signal(signal.SIGINT)
    assert p.wait(15) == 1
    err = "\n".join(p.err)
    assert "did not take 7 dumplings before the interrupt" in err
    assert "12 packets, 7 dumplings" in err
    _no_traceback(p)


def test_dump_output_that_cannot_be_written(procs, hub_process, tmp_path):
    # A missing directory or a directory as the file: refused at start, like tcpdump -w.
    rc, p = _run(procs, "nd-dump", "-w", str(tmp_path / "nodir" / "x.pcap"), "--hub",
                 f"127.0.0.1:{free_port()}")
    assert rc == 1 and any("no such directory" in line for line in p.err), p.err
    rc, p = _run(procs, "nd-dump", "-w", str(tmp_path), "--hub", f"127.0.0.1:{free_port()}")
    assert rc == 1 and any("it is a directory" in line for line in p.err), p.err

    # Known only at the first packet (%k in a directory name): a clear error and exit 1, not
    # a "connection lost; reconnecting" loop that drops every packet.
    in_port, out_port, _ = hub_process()
    template = str(tmp_path / "by-%k" / "x.pcap")
    dump = procs(nd_command("nd-dump") + ["-w", template, "--hub", f"127.0.0.1:{out_port}"])
    dump.wait_line("connected")
    rc, k = _run(procs, "nd-sniff", "-q", "-r", DNS, "-c", "PacketForwardChef", "--hub",
                 f"127.0.0.1:{in_port}")
    assert rc == 0
    assert dump.wait(15) == 1
    err = "\n".join(dump.err)
    assert f"cannot write {tmp_path}/by-default/x.pcap: No such file or directory" in err
    assert "reconnecting" not in err
    _no_traceback(dump)


def test_count_stops_a_file_after_n_packets(procs, tmp_path):
    """--count N, as tcpdump -c: the kitchen stops after N packets, the chefs finish as at
    the end of the file, and -w writes exactly those N packets."""
    out = tmp_path / "first5.pcap"
    rc, p = _run(procs, "nd-sniff", "-r", DNS, "--count", "5", "-c", "DNSLookupChef",
                 "--print", "-p", "0", "-w", str(out))
    assert rc == 0, p.err
    assert any(line.startswith("nd-sniff: 5 packets,") for line in p.err), p.err
    payloads = [json.loads(line)["payload"] for line in p.out]
    assert payloads[-1]["lookups_seen"]            # the end-of-capture interval dumpling
    from netdumplings.capture.sources import PcapSource
    src = PcapSource(DNS)
    first = [bytes(q.data) for _, q in zip(range(5), src)]
    src.close()
    written = PcapSource(out)
    assert [bytes(q.data) for q in written] == first
    written.close()
    # the same file without --count: more than 5 packets, so the cut was real
    rc, p = _run(procs, "nd-sniff", "-r", DNS, "-c", "DNSLookupChef", "--print", "-p", "0")
    (summary,) = [line for line in p.err if line.startswith("nd-sniff:")]
    assert int(summary.split()[1]) > 5


@needs_capture
def test_count_stops_a_live_capture(procs):
    """Live, --count ends the capture by itself (no signal) once N packets matched."""
    port = free_port(socket.SOCK_DGRAM)
    p = procs(nd_command("nd-sniff") + ["-i", "lo", "-f", f"udp dst port {port}", "--count",
                                        "3", "-m", CHEFS_FILE, "-c", "UdpPayloadChef",
                                        "--print", "-v"])
    p.wait_line("sniffing", timeout=15)
    time.sleep(0.3)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for n in range(10):   # more than --count: the kitchen stops at the third
            s.sendto(b"datagram %d" % n, ("127.0.0.1", port))
            time.sleep(0.05)
    assert p.wait(15) == 0
    assert [json.loads(line)["payload"]["text"] for line in p.out] == \
        ["datagram 0", "datagram 1", "datagram 2"]
    assert any(line.startswith("nd-sniff: 3 packets,") for line in p.err), p.err
    _no_traceback(p)


@needs_capture
def test_snaplen_zero_keeps_whole_packets(procs):
    """-s 0 means 'the default' as in tcpdump; it used to cut every packet to 0 bytes."""
    port = free_port(socket.SOCK_DGRAM)
    p = procs(nd_command("nd-sniff") + ["-i", "lo", "-f", f"udp dst port {port}", "-s", "0",
                                        "-m", CHEFS_FILE, "-c", "UdpPayloadChef", "--print",
                                        "-v"])
    p.wait_line("sniffing", timeout=15)
    time.sleep(0.3)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        deadline = time.monotonic() + 10
        while not p.out and time.monotonic() < deadline:
            s.sendto(b"whole-payload", ("127.0.0.1", port))
            time.sleep(0.2)
    p.p.send_signal(signal.SIGINT)
    assert p.wait(15) == 0
    payloads = [json.loads(line)["payload"] for line in p.out]
    assert payloads and payloads[0] == {"text": "whole-payload", "sport": payloads[0]["sport"],
                                        "dport": port}
    _no_traceback(p)


def test_print_waiting_for_the_hub_says_so_once(procs):
    """nd-print started before its hub: one 'cannot reach' line, not a 'connection to the
    hub lost' line at every reconnect attempt, then it connects when the hub comes."""
    port = free_port()
    p = procs(nd_command("nd-print") + ["--hub", f"127.0.0.1:{port}", "--json"])
    p.wait_line("cannot reach the hub")
    time.sleep(4)  # several attempts (backoff from 0.2 s)
    hub = procs(nd_command("nd-hub") + ["--in-port", str(free_port()), "--out-port", str(port),
                                        "--metrics-port", "0", "--status-freq", "0.5"])
    p.wait_line("connected to", timeout=20)
    p.wait_line("SystemStatusChef", timeout=10, stream="out")
    assert sum("cannot reach the hub" in line for line in p.err) == 1, p.err
    assert not any("connection to the hub lost" in line for line in p.err), p.err
    _no_traceback(p)
    hub.kill()


def test_hub_sigterm_stops_cleanly_and_eaters_reconnect(procs):
    """``docker stop``/systemd send SIGTERM: the hub closes its connections with 1001 and
    exits 0; a connected nd-print neither crashes nor quits, and eats from the next hub.
    (Before: the hub died with 143, and a cleanly closing hub made every eater raise an
    AssertionError inside websockets.)"""
    in_port, out_port = free_port(), free_port()
    hub_cmd = nd_command("nd-hub") + ["-i", str(in_port), "-o", str(out_port),
                                      "--metrics-port", "0", "--status-freq", "0"]
    sniff = nd_command("nd-sniff") + ["-r", DNS, "-c", "DNSLookupChef",
                                      "--hub", f"127.0.0.1:{in_port}", "-p", "0"]

    def feed_and_wait(printer, before: int) -> int:
        rc, k = _run(procs, *sniff, timeout=60)
        assert rc == 0, k.err
        deadline = time.monotonic() + 20
        while len(printer.out) <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(printer.out) > before, printer.err
        return len(printer.out)

    hub = procs(hub_cmd)
    wait_port(in_port)
    wait_port(out_port)
    printer = procs(nd_command("nd-print") + ["--hub", f"127.0.0.1:{out_port}"])
    hub.wait_line("eater", timeout=15)
    seen = feed_and_wait(printer, 0)

    hub.p.send_signal(signal.SIGTERM)
    assert hub.wait(15) == 0, hub.err
    _no_traceback(hub)
    time.sleep(1.0)
    assert printer.p.poll() is None, printer.err   # still there, trying to reconnect
    _no_traceback(printer)

    hub2 = procs(hub_cmd)
    wait_port(in_port)
    hub2.wait_line("eater", timeout=20)              # the printer came back by itself
    feed_and_wait(printer, seen)
    _no_traceback(printer)


def _nofile(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open files limit")


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="needs /proc")
def test_hub_raises_its_open_files_limit_or_warns(procs):
    """256 kitchens + 1024 eaters (the default limits) need more descriptors than the common
    default soft limit of 1024: the hub raises it up to the hard limit, else says so."""
    for limits, raised in (("1024:8192", True), ("1024:1024", False)):
        in_port, out_port = free_port(), free_port()
        hub = procs(["prlimit", f"--nofile={limits}", "--"] + nd_command("nd-hub") + [
            "-i", str(in_port), "-o", str(out_port), "--metrics-port", "0",
            "--status-freq", "0"])
        wait_port(in_port)
        soft, hard = _nofile(hub.p.pid)
        if raised:
            assert soft == 2 * (256 + 1024) + 64 and hard == 8192
            assert not any("open files limit" in line for line in hub.err)
        else:
            assert soft == 1024
            hub.wait_line("open files limit is 1024, below the 2624", timeout=10)
        hub.terminate()


def test_list_interfaces_shows_what_the_kernel_has(procs):
    """-D, as tcpdump -D: every interface of this network namespace, with state and
    addresses; inside a namespace the test makes, exactly that namespace's interfaces."""
    import os
    rc, p = _run(procs, "nd-sniff", "-D")
    assert rc == 0, p.err
    names = {line.split(" ", 1)[0].split(".", 1)[1] for line in p.out}
    assert names == set(os.listdir("/sys/class/net"))
    (lo,) = [line for line in p.out if line.split(" ", 1)[0].endswith(".lo")]
    assert "Up" in lo and "Loopback" in lo and "127.0.0.1" in lo


def test_list_interfaces_inside_a_test_namespace(procs):
    import subprocess
    from conftest import veth_namespaces
    with veth_namespaces("ndls", "10.217.7", lambda ns: None) as ns:
        out = subprocess.run(["ip", "netns", "exec", ns["A"]] + nd_command("nd-sniff")
                             + ["-D"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert {line.split(" ", 1)[0].split(".", 1)[1] for line in lines} == {"lo", ns["if_a"]}
    (veth,) = [line for line in lines if f".{ns['if_a']} " in line]
    assert "[Up" in veth and "10.217.7.1" in veth
