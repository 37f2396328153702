"""A newcomer's first hour (issue 20), each point as the command a user types: the README's
own chef and command, a chef the filter leaves blind, Ctrl-C with the hub down, the exit
status of a chef that always raises, --chef-list, nd-print's status line, and the hint
after "connection refused"."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from conftest import DATA, free_port, needs_capture, nd_command
from conftest import assert_no_traceback as _no_traceback
from conftest import run_nd as _run

ROOT = Path(__file__).resolve().parents[2]
CHEFS_FILE = str(Path(__file__).parent.parent / "chefmods" / "udp_echo_chefs.py")
DNS = str(DATA / "dns-queries.pcap")
FLUENTD = str(DATA / "fluentd-forward-mode.pcap")


def readme_chefs(tmp_path: Path) -> Path:
    """The README's chef example, as a user would save it: mychefs.py."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "LineChef" in b)
    path = tmp_path / "mychefs.py"
    path.write_text(block, encoding="utf-8")
    return path


def readme_sniff_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if "nd-sniff" in line and "mychefs" in line
            and ("--filter" in line or " -f " in line)]


# -- 1. the README's chef, with the README's command ------------------------------------


def test_readme_chef_and_its_commands_agree(tmp_path):
    """Every README command that runs mychefs with a filter passes LineChef's port, as
    libpcap decides (the check nd-sniff makes at start)."""
    from netdumplings.kitchen.chef import chefs_in_module
    from netdumplings.cli.portcheck import blind_chefs
    from netdumplings.kitchen.kitchen import Kitchen

    chefs = chefs_in_module(str(readme_chefs(tmp_path)))
    kitchen = Kitchen("readme", list(chefs.values()))
    commands = readme_sniff_commands()
    assert len(commands) >= 2, commands
    for line in commands:
        m = re.search(r"""(?:--filter|-f) (["'])(.*?)\1""", line)
        assert m, line
        assert blind_chefs(m.group(2), kitchen.chefs) == [], line
    # and the check can fail: the old README's filter
    assert blind_chefs("tcp port 24224", kitchen.chefs)


@needs_capture
def test_readme_command_decodes_the_readme_chef(procs, tmp_path):
    """The README's usage line, live on lo, with the README's LineChef: a line sent to its
    port comes out as a dumpling."""
    readme_chefs(tmp_path)
    line = next(c for c in readme_sniff_commands() if " -i lo " in c)
    m = re.search(r"""--filter (["'])(.*?)\1""", line)
    port = int(re.search(r"port (\d+)", m.group(2)).group(1))
    kitchen = procs(nd_command("nd-sniff") + ["-i", "lo", "--filter", m.group(2),
                                              "--chef-module", "mychefs", "--print", "-v"],
                    cwd=str(tmp_path))
    kitchen.wait_line("sniffing lo")
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    try:
        with socket.create_connection(("127.0.0.1", port)) as c:
            conn, _ = server.accept()
            c.sendall(b"hello dumplings\n")
            conn.recv(100)
            conn.close()
        kitchen.wait_line('"line":"hello dumplings"', stream="out", timeout=15)
    finally:
        server.close()
    kitchen.p.send_signal(signal.SIGINT)
    assert kitchen.wait(15) == 0, kitchen.err
    assert not any("followed no flow" in e or "never passes" in e for e in kitchen.err)


def test_chef_the_filter_never_passes_is_named_at_start_and_exit(procs, tmp_path):
    readme_chefs(tmp_path)
    rc, p = _run(procs, "nd-sniff", "-r", FLUENTD, "--filter", "tcp port 24224",
                 "--chef-module", str(tmp_path / "mychefs.py"), "--print")
    assert rc == 0, p.err
    err = "\n".join(p.err)
    assert ("warning: LineChef follows tcp port 7777, which the filter 'tcp port 24224' "
            "never passes: it will see nothing. Give it -o LineChef.ports=24224") in err, err
    # -f applies to files too: this capture's Fluentd talks on 24230, so nothing passes
    assert "LineChef followed no flow (port 7777); the capture had no tcp flows" in err, err
    # without the filter, the exit line names the busiest port the chef did not follow
    rc, p = _run(procs, "nd-sniff", "-r", FLUENTD,
                 "--chef-module", str(tmp_path / "mychefs.py"), "--print")
    assert rc == 0, p.err
    assert re.search(r"LineChef followed no flow \(port 7777\); busiest ports it did not "
                     r"follow: tcp 24230 \(1 flow\) \(-o LineChef.ports=24230",
                     "\n".join(p.err)), p.err
    # a filter that does pass the port: no warning
    rc, p = _run(procs, "nd-sniff", "-r", FLUENTD, "tcp", "port", "7777", "or", "udp",
                 "--chef-module", str(tmp_path / "mychefs.py"), "--print")
    assert rc == 0 and not any("never passes" in e for e in p.err), p.err


def test_bundled_chefs_are_named_only_with_v(procs):
    """The bundled set, each chef for its own protocol: a DNS filter rightly leaves the
    Fluentd chef nothing, so that is said only with -v."""
    rc, p = _run(procs, "nd-sniff", "-r", FLUENTD, "--print")
    assert rc == 0 and not any("followed no flow" in e for e in p.err), p.err
    rc, p = _run(procs, "nd-sniff", "-r", DNS, "--print", "udp", "port", "53")
    assert rc == 0 and not any("never passes" in e for e in p.err), p.err
    rc, p = _run(procs, "nd-sniff", "-r", DNS, "--print", "-v", "udp", "port", "53")
    assert rc == 0 and any("FluentdForwardChef follows tcp port 24224, which the filter "
                           "'udp port 53' never passes" in e for e in p.err), p.err


# -- 4. Ctrl-C with the hub down --------------------------------------------------------


@needs_capture
def test_ctrl_c_with_the_hub_down_ends_within_2_seconds(procs):
    """A live kitchen whose hub is down used to take 36 s to exit after Ctrl-C, silently."""
    port = free_port(socket.SOCK_DGRAM)
    hub = f"127.0.0.1:{free_port()}"
    kitchen = procs(nd_command("nd-sniff") + ["-i", "lo", f"udp port {port}", "-m", CHEFS_FILE,
                                              "-c", "UdpPayloadChef", "--hub", hub, "-v"])
    kitchen.wait_line("sniffing lo")
    kitchen.wait_line("not reachable")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(5):
            s.sendto(b"x%d" % i, ("127.0.0.1", port))
    time.sleep(0.5)
    started = time.monotonic()
    kitchen.p.send_signal(signal.SIGINT)
    rc = kitchen.wait(30)
    took = time.monotonic() - started
    assert took < 2.0 + 2.0, f"Ctrl-C took {took:.1f}s"   # the bound is 2 s; 2 s of slack
    assert rc == 1
    err = "\n".join(kitchen.err)
    assert f"the hub at {hub} did not take 5 dumplings before the interrupt (they were " \
           "held in memory only, and are lost)" in err, err
    _no_traceback(kitchen)


@needs_capture
def test_second_ctrl_c_ends_at_once(procs, tmp_path):
    """A chef busy at the end of the capture (here: sleeping) holds the first Ctrl-C's
    clean stop; the second one ends the kitchen at once."""
    chef = tmp_path / "slowchefs.py"
    chef.write_text("import time\nfrom netdumplings import DumplingChef\n\n"
                    "class SlowEndChef(DumplingChef):\n"
                    "    def interval_handler(self, interval=None):\n"
                    "        time.sleep(60)\n")
    port = free_port(socket.SOCK_DGRAM)
    kitchen = procs(nd_command("nd-sniff") + ["-i", "lo", f"udp port {port}", "-m", str(chef),
                                              "-p", "0", "--hub", f"127.0.0.1:{free_port()}",
                                              "-v"])
    kitchen.wait_line("sniffing lo")
    kitchen.p.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert kitchen.p.poll() is None          # still in the chef's end
    started = time.monotonic()
    kitchen.p.send_signal(signal.SIGINT)
    assert kitchen.wait(10) == 130
    assert time.monotonic() - started < 3.0   # "at once": os._exit, with slack for a busy CI
    assert any("interrupted again: exiting now" in e for e in kitchen.err), kitchen.err
    _no_traceback(kitchen)


# -- 6. a chef that always raises, and --chef-list ---------------------------------------


def test_chef_raising_on_every_packet_fails_the_run(procs):
    rc, p = _run(procs, "nd-sniff", "-r", DNS, "-m", CHEFS_FILE, "-c", "AlwaysRaisingChef",
                 "-c", "PacketCountChef", "--print")
    assert rc == 1, p.err
    err = "\n".join(p.err)
    assert "12 chef errors (AlwaysRaisingChef 12)" in err
    assert "error: AlwaysRaisingChef raised on everything it was given (12 errors, no " \
           "dumplings" in err, err
    # the other chef's dumplings still came out
    assert any('"PacketCountChef"' in line for line in p.out)
    # a chef that raises on some packets only is not a failed run
    rc, p = _run(procs, "nd-sniff", "-r", DNS, "-m", CHEFS_FILE, "-c", "RaisingChef", "--print")
    assert rc == 0 and not any("raised on everything" in e for e in p.err), p.err


def test_chef_list_whole_descriptions_aligned_user_chefs_by_their_names(procs, tmp_path):
    readme_chefs(tmp_path)
    rc, p = _run(procs, "nd-sniff", "-l", "-m", "mychefs.py", "-m", CHEFS_FILE,
                 cwd=str(tmp_path), env={"COLUMNS": "100"})
    assert rc == 0, p.err
    head, *rows = p.out
    assert head.split() == ["CHEF", "FROM", "DESCRIPTION"]
    col = head.index("DESCRIPTION")
    starts = [r for r in rows if not r.startswith(" ")]
    # every row's description starts in the same column; continuation lines are indented to it
    assert all(len(r) > col and r[col - 2:col] == "  " and r[col] != " " for r in starts), rows
    assert all(r[:col].strip() == "" and r[col] != " " for r in rows if r.startswith(" "))
    line = next(r for r in starts if r.startswith("LineChef"))
    assert line.split()[1] == "mychefs.py", line
    assert next(r for r in starts if r.startswith("UdpPayloadChef")).split()[1] == CHEFS_FILE
    # the whole first paragraph of a long docstring, not its first line
    text = " ".join(r[col:] for r in rows)
    assert "lists IPs that changed MAC." in text
    assert all(len(r) <= 100 for r in rows)


# -- 5. nd-print shows dumplings first ---------------------------------------------------


@pytest.mark.parametrize("how", ["default", "full", "off"])
def test_print_shows_the_hub_status_as_one_line(procs, hub_process, how):
    in_port, out_port, _ = hub_process(status_freq=0.3)
    extra = [] if how == "default" else ["--hub-status", how]
    printer = procs(nd_command("nd-print") + ["--hub", f"127.0.0.1:{out_port}", "--no-color",
                                              *extra])
    printer.wait_line("connected to")
    rc, kitchen = _run(procs, "nd-sniff", "-r", DNS, "-c", "DNSLookupChef", "-p", "0",
                       "--hub", f"127.0.0.1:{in_port}")
    assert rc == 0, kitchen.err
    printer.wait_line("DNSLookupChef packet #1", stream="out")
    time.sleep(1.5)   # several status periods
    printer.terminate()
    status = [line for line in printer.out if "/SystemStatusChef " in line]
    dns = [line for line in printer.out if "/DNSLookupChef packet" in line]
    assert len(dns) == 6, printer.out
    if how == "off":
        assert status == [] and not any("server_uptime" in line for line in printer.out)
        return
    assert len(status) >= 3, printer.out
    if how == "default":
        # one line each, figures included, and no block of the status's fields after it
        assert all(re.search(r"hub up \d\d:\d\d:\d\d, \d+ kitchens, \d+ eaters, dumplings "
                             r"in \d+ out \d+", line) for line in status), status
        assert not any("server_uptime" in line for line in printer.out), printer.out
    else:
        assert any(line.startswith("    ") and "server_uptime" in line
                   for line in printer.out), printer.out


# -- 7. nd-sniff -r decodes the bundled capture as nd-demo does ---------------------------


def test_demo_says_the_nd_sniff_command_that_decodes_the_same(procs):
    def payloads(lines: list[str]) -> list[str]:
        out = []
        for line in lines:
            if line.startswith("{"):
                d = json.loads(line)
                if d["metadata"]["chef"] != "SystemStatusChef":
                    out.append(json.dumps([d["metadata"]["chef"], d["metadata"]["driver"],
                                           d["payload"]], sort_keys=True))
        return sorted(out)

    rc, demo = _run(procs, "nd-demo", "--json", timeout=60)
    assert rc == 0, demo.err
    line = next(e for e in demo.err if "the same with nd-sniff: " in e)
    words = line.split("the same with nd-sniff: ", 1)[1].split()
    assert words[0] == "nd-sniff" and "-o" in words   # the port option, said not hidden
    rc, sniff = _run(procs, *words, timeout=60)
    assert rc == 0, sniff.err
    want, got = payloads(demo.out), payloads(sniff.out)
    assert len(want) > 200 and got == want
    assert any('"FluentdForwardChef"' in p for p in got)


# -- 2. nd-print on another host ----------------------------------------------------------


def test_refused_eater_says_where_to_look(procs):
    port = free_port()
    rc, p = _run(procs, "nd-print", "--hub", f"127.0.0.1:{port}", "--no-reconnect")
    assert rc == 1
    assert any(f"nd-print: nothing accepts connections at 127.0.0.1:{port}: is nd-hub running "
               "on this host, with its out-port on" in line for line in p.err), p.err
    _no_traceback(p)
    # reconnecting: said once, with the hint
    printer = procs(nd_command("nd-print") + ["--hub", f"127.0.0.1:{port}"])
    printer.wait_line("is nd-hub running on this host")
    rc, p = _run(procs, "nd-hubstatus", "--hub", f"127.0.0.1:{port}", "--once")
    assert rc == 1 and any("nd-hubstatus: nothing accepts connections" in e for e in p.err)


def test_refused_hint_for_another_host_names_the_hub_address_option():
    from netdumplings.eater.hints import refused_hint
    hint = refused_hint("ws://hub.lan:11348", ConnectionRefusedError(111, "refused"))
    assert "is nd-hub running on hub.lan" in hint and "-a 0.0.0.0" in hint
    assert "tokens and TLS" in hint
    assert refused_hint("ws://hub.lan:11348", TimeoutError()) == ""


def test_readme_two_host_commands_parse():
    """The README's two-host set-up: a hub open to the network with tokens and TLS, a
    kitchen and an eater pointing at it, each accepted by its command's parser."""
    import shlex

    from netdumplings.cli import flags
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Eaters on another host", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    commands = {}
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "sudo":
            words = words[1:]
        if words:
            commands[Path(words[0]).name] = words[1:]
    hub = flags.build_parser("nd-hub").parse_args(commands["nd-hub"])
    assert hub.address == "0.0.0.0" and hub.certfile and hub.keyfile
    assert hub.kitchen_token_file and hub.eater_token_file
    sniff = flags.build_parser("nd-sniff").parse_intermixed_args(commands["nd-sniff"])
    assert sniff.hub.startswith("wss://") and sniff.token_file and sniff.cafile
    printer = flags.build_parser("nd-print").parse_args(commands["nd-print"])
    assert printer.hub.startswith("wss://") and printer.token_file and printer.cafile


def test_refused_kitchen_says_where_to_look(procs):
    rc, p = _run(procs, "nd-sniff", "-r", DNS, "-c", "DNSLookupChef", "--hub",
                 f"127.0.0.1:{free_port()}", "--flush-timeout", "0.5")
    assert rc == 1
    assert any("not reachable" in e and "is this its in-port (kitchens connect to the "
               "in-port" in e for e in p.err), p.err


@needs_capture
def test_ctrl_c_with_a_frozen_hub_ends_within_2_seconds(procs, hub_process):
    """The hub is connected but stopped (SIGSTOP): it takes nothing and never answers.
    Ctrl-C still ends the kitchen within the bound, saying what was not delivered."""
    in_port, _, hub = hub_process()
    port = free_port(socket.SOCK_DGRAM)
    kitchen = procs(nd_command("nd-sniff") + ["-i", "lo", f"udp port {port}", "-m", CHEFS_FILE,
                                              "-c", "UdpPayloadChef", "--hub",
                                              f"127.0.0.1:{in_port}", "-v"])
    kitchen.wait_line("sniffing lo")
    time.sleep(1.0)   # connected
    hub.send_signal(signal.SIGSTOP)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(2000):
                s.sendto(b"x" * 1000, ("127.0.0.1", port))
        time.sleep(1.0)
        started = time.monotonic()
        kitchen.p.send_signal(signal.SIGINT)
        rc = kitchen.wait(30)
        took = time.monotonic() - started
    finally:
        hub.send_signal(signal.SIGCONT)
    assert took < 2.0 + 2.0, f"Ctrl-C took {took:.1f}s"
    assert rc == 1
    assert any(re.search(r"did not take \d+ dumplings before the interrupt", e)
               for e in kitchen.err), kitchen.err
    _no_traceback(kitchen)
