"""User mistakes and bad input give one clear line and the right exit code, never a traceback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import (DATA, free_port, needs_capture, nd_command, wait_port)
from conftest import assert_no_traceback as _no_traceback
from conftest import run_nd as _run

CHEFS_FILE = str(Path(__file__).parent.parent / "chefmods" / "udp_echo_chefs.py")


@needs_capture
def test_unknown_interface(procs):
    rc, p = _run(procs, "nd-sniff", "-i", "nosuchif0", "--print")
    assert rc == 1
    assert any("unknown interface 'nosuchif0'" in line for line in p.err)
    _no_traceback(p)


@needs_capture
def test_bad_bpf_filter(procs):
    rc, p = _run(procs, "nd-sniff", "-i", "lo", "-f", "tcp port banana", "--print")
    assert rc == 1
    assert any("bad capture filter 'tcp port banana'" in line for line in p.err), p.err
    _no_traceback(p)


def test_bad_magic_reads_nothing(procs):
    rc, p = _run(procs, "nd-sniff", "-r", str(DATA / "corrupt" / "bad-magic.pcap"), "--print",
                 "-c", "PacketCountChef")
    assert rc == 1
    assert any("not a pcap/pcapng file" in line and "byte offset 0" in line for line in p.err)
    assert any("0 packets" in line for line in p.err)
    _no_traceback(p)


def test_cut_file_processes_records_before_the_damage(procs):
    exp = json.loads((DATA / "corrupt" / "cut-mid-record.expected.json").read_text())
    complete = exp["capture"]["complete_records"]
    rc, p = _run(procs, "nd-sniff", "-r", str(DATA / "corrupt" / "cut-mid-record.pcap"),
                 "--print", "-c", "PacketCountChef")
    assert rc == 1
    counts = [json.loads(line)["payload"]["packet_counts"] for line in p.out]
    assert counts and counts[-1]["Ethernet"] == complete
    err = "\n".join(p.err)
    assert "truncated record at byte offset" in err and f"after {complete} complete" in err
    assert f"{complete} packets" in err
    _no_traceback(p)


def test_unreadable_file(procs):
    rc, p = _run(procs, "nd-sniff", "-r", "/nonexistent/capture.pcap", "--print")
    assert rc == 1 and any("cannot open /nonexistent/capture.pcap" in line for line in p.err)
    _no_traceback(p)


def test_chef_module_that_fails_to_import(procs, tmp_path):
    bad = tmp_path / "broken_chefs.py"
    bad.write_text("import no_such_module_anywhere\n")
    rc, p = _run(procs, "nd-sniff", "-m", str(bad), "-r", str(DATA / "dns-queries.pcap"),
                 "--print")
    assert rc == 2
    assert any("failed to import" in line and "no_such_module_anywhere" in line for line in p.err)
    _no_traceback(p)


def test_chef_module_that_exits_on_import(procs, tmp_path):
    """A module calling sys.exit() at import used to end nd-sniff silently with its code."""
    for name, spec in (("exiting_chefs.py", None), ("exiting_mod_chefs", "exiting_mod_chefs")):
        mod = tmp_path / (name if name.endswith(".py") else name + ".py")
        mod.write_text("import sys\nsys.exit(3)\n")
        rc, p = _run(procs, "nd-sniff", "-m", spec or str(mod), "-r",
                     str(DATA / "dns-queries.pcap"), "--print", cwd=str(tmp_path))
        assert rc == 2, (rc, p.err)
        assert any("failed to import: SystemExit: 3" in line for line in p.err), p.err
        assert not p.out
        _no_traceback(p)


def test_chef_module_without_chefs(procs, tmp_path):
    empty = tmp_path / "nochefs.py"
    empty.write_text("X = 1\n")
    rc, p = _run(procs, "nd-sniff", "-m", str(empty), "-r", str(DATA / "dns-queries.pcap"),
                 "--print")
    assert rc == 2 and any("no DumplingChef subclasses" in line for line in p.err)
    rc, p = _run(procs, "nd-sniff", "-c", "NoSuchChef", "-r", str(DATA / "dns-queries.pcap"),
                 "--print")
    assert rc == 2 and any("unknown chef(s): NoSuchChef" in line for line in p.err)
    _no_traceback(p)


def test_bad_chef_option(procs):
    rc, p = _run(procs, "nd-sniff", "-c", "DNSLookupChef", "-o", "DNSLookupChef.nonsense=1",
                 "-r", str(DATA / "dns-queries.pcap"), "--print")
    assert rc == 2 and any("nonsense" in line for line in p.err)
    rc, p = _run(procs, "nd-sniff", "-c", "DNSLookupChef", "-o", "oops",
                 "-r", str(DATA / "dns-queries.pcap"), "--print")
    assert rc == 2 and any("expected CHEF.KEY=VALUE" in line for line in p.err)
    _no_traceback(p)


def test_chef_from_dotted_module_and_file_path(procs):
    tests_dir = str(Path(__file__).parent.parent)
    for spec, cwd in (("chefmods.udp_echo_chefs", tests_dir), (CHEFS_FILE, None)):
        rc, p = _run(procs, "nd-sniff", "-m", spec, "-l", cwd=cwd)
        assert rc == 0
        listed = "\n".join(p.out)
        assert "UdpPayloadChef" in listed and "RaisingChef" in listed
        assert "_Hidden" not in listed and "DumplingChef " not in listed


def test_raising_chef_does_not_stop_the_kitchen(procs):
    rc, p = _run(procs, "nd-sniff", "-m", CHEFS_FILE, "-c", "RaisingChef", "-c",
                 "PacketCountChef", "-r", str(DATA / "dns-queries.pcap"), "--print")
    assert rc == 0
    dumplings = [json.loads(line) for line in p.out]
    raising = [d for d in dumplings if d["metadata"]["chef"] == "RaisingChef"]
    assert [d["payload"]["n"] for d in raising] == [2, 4, 6, 8, 10, 12]
    counts = [d for d in dumplings if d["metadata"]["chef"] == "PacketCountChef"]
    assert counts[-1]["payload"]["packet_counts"]["Ethernet"] == 12
    err = "\n".join(p.err)
    assert "7 chef errors (RaisingChef 7)" in err  # 6 packets + the final interval poke
    assert "packet_handler raised: RuntimeError: boom" in err


def test_hub_not_there_at_start_then_arrives(procs):
    in_port, out_port = free_port(), free_port()
    kitchen = procs(nd_command("nd-sniff") + ["-r", str(DATA / "dns-queries.pcap"),
                                              "-c", "DNSLookupChef", "--hub",
                                              f"127.0.0.1:{in_port}", "--flush-timeout", "20"])
    kitchen.wait_line("not reachable")
    time.sleep(1.0)
    hub = procs(nd_command("nd-hub") + ["--in-port", str(in_port), "--out-port", str(out_port)])
    wait_port(in_port)
    assert kitchen.wait(30) == 0, kitchen.err
    _no_traceback(kitchen)
    hub.wait_line("disconnected (7 dumplings")


def test_hub_never_there(procs):
    rc, p = _run(procs, "nd-sniff", "-r", str(DATA / "dns-queries.pcap"), "--hub",
                 f"127.0.0.1:{free_port()}", "--flush-timeout", "1.5", "-c", "DNSLookupChef")
    assert rc == 1
    err = "\n".join(p.err)
    assert "not reachable" in err and "did not take 7 dumplings" in err
    _no_traceback(p)


@pytest.mark.parametrize("cmd", ["nd-sniff", "nd-hub", "nd-print", "nd-hubstatus",
                                 "nd-hubdetails", "nd-demo"])
def test_help_and_version(procs, cmd):
    rc, p = _run(procs, cmd, "--help")
    assert rc == 0 and p.out and "usage:" in p.out[0]
    rc, p = _run(procs, cmd, "--version")
    assert rc == 0 and "netdumplings" in p.out[0]


def test_eater_without_hub(procs):
    rc, p = _run(procs, "nd-print", "--hub", f"127.0.0.1:{free_port()}", "--no-reconnect")
    assert rc == 1 and any("cannot reach the hub" in line for line in p.err)
    _no_traceback(p)


def test_backplane_without_nats_py_fails_at_start(procs):
    """A hub asked to join a backplane it cannot reach for want of nats-py says so and stops,
    rather than serving alone while the user believes it is clustered."""
    import sys
    code = ("import sys; sys.modules['nats'] = None\n"
            "from netdumplings.cli.hub import main\n"
            "sys.argv = ['nd-hub', '--backplane', 'nats://127.0.0.1:4222', '--in-port', '0']\n"
            "main()\n")
    p = procs([sys.executable, "-c", code])
    rc = p.wait(30)
    assert rc == 2
    assert any("--backplane needs nats-py" in line for line in p.err), p.err
    _no_traceback(p)


@needs_capture
def test_kitchen_refused_by_the_hub_stops_capturing(procs, tmp_path):
    """A wrong kitchen token is refused for good (1008): the sender stopped retrying, but
    nd-sniff went on capturing live for nobody until Ctrl-C (issue 23, left over)."""
    token = tmp_path / "kitchen.token"
    token.write_text("right\n")
    wrong = tmp_path / "wrong.token"
    wrong.write_text("nope\n")
    in_port, out_port = free_port(), free_port()
    procs(nd_command("nd-hub") + ["--in-port", str(in_port), "--out-port", str(out_port),
                                  "--metrics-port", "0", "--kitchen-token-file", str(token)])
    wait_port(in_port)
    started = time.monotonic()
    rc, p = _run(procs, "nd-sniff", "-i", "lo", "-f", f"udp port {free_port()}",
                 "-c", "PacketCountChef", "--hub", f"127.0.0.1:{in_port}",
                 "--token-file", str(wrong), timeout=30)
    assert rc == 1, p.err
    assert time.monotonic() - started < 25
    err = "\n".join(p.err)
    assert "refused this kitchen (close code 1008)" in err and "capture stopped" in err, err
    assert "token" in err
    _no_traceback(p)
