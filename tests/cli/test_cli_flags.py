"""Short flags: one meaning per letter across the commands, tcpdump's habits, every flag of
netdumplings 0.5's five commands with 0.5's meaning, and the table in docs/cli/index.md
read from the parsers themselves."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from conftest import DATA, free_port, nd_command, wait_port
from conftest import assert_no_traceback as _no_traceback
from conftest import run_nd as _run
from netdumplings.cli import flags

ROOT = Path(__file__).resolve().parents[2]
DNS = str(DATA / "dns-queries.pcap")


def parse(command: str, *argv: str):
    p = flags.build_parser(command)
    if command == "nd-sniff":
        return p.parse_intermixed_args(list(argv))
    return p.parse_args(list(argv))


def test_every_letter_is_explained():
    rows = flags.table()
    unexplained = sorted(set(rows) - set(flags.MEANINGS))
    assert not unexplained, f"short flags with no entry in cli/flags.py MEANINGS: {unexplained}"
    # and no stale entries either: each explained letter is used somewhere
    assert not sorted(set(flags.MEANINGS) - set(rows))


def test_a_letter_means_one_thing_in_every_command():
    for short, where in flags.table().items():
        meanings = {}
        for command, long in where.items():
            if command == "nd-hub" and short in flags.HUB_OWN:
                continue  # 0.5's hub ports and status frequency, documented
            key = long.split(",")[0].split()[0]
            meanings.setdefault(flags.SAME.get(key, key), []).append(command)
        assert len(meanings) == 1, f"{short} means different things: {meanings}"


def test_tcpdump_letters_mean_what_tcpdump_means():
    args = parse("nd-sniff", "-i", "lo", "-r", "x.pcap", "-w", "y.pcap", "-s", "96", "-c", "100",
                 "-v", "tcp", "port", "80")
    assert (args.interface, args.read, args.write, args.snaplen, args.count, args.verbose,
            args.expression) == (["lo"], "x.pcap", "y.pcap", 96, 100, 1, ["tcp", "port", "80"])
    assert parse("nd-sniff", "-D").list_interfaces
    assert parse("nd-sniff", "-F", "f.bpf").filter_file == "f.bpf"
    assert parse("nd-dump", "-w", "-", "-c", "5", "-C", "1", "-G", "60").count == 5
    assert parse("nd-print", "-c", "7").count == 7
    for command in flags.COMMANDS:
        with pytest.raises(SystemExit) as exc:
            parse(command, "-h")
        assert exc.value.code == 0


# Every flag of 0.5.1's five commands (its click options), with 0.5's meaning.
def test_netdumplings_05_sniff_flags():
    args = parse("nd-sniff", "-n", "k1", "-i", "lo", "-f", "udp port 53", "-m", "mychefs",
                 "-c", "DNSLookupChef", "-c", "ARPChef", "-p", "2.5", "-l",
                 "--hub", "h:1")
    assert (args.kitchen_name, args.interface, args.filter, args.chef_module, args.chef,
            args.poke_interval, args.chef_list, args.hub) == (
        "k1", ["lo"], "udp port 53", ["mychefs"], ["DNSLookupChef", "ARPChef"], 2.5, True, "h:1")
    long = parse("nd-sniff", "--kitchen-name", "k", "--interface", "all", "--filter", "arp",
                 "--chef-module", "m", "--chef", "C", "--poke-interval", "1", "--chef-list")
    assert (long.kitchen_name, long.interface, long.filter, long.chef, long.poke_interval) == (
        "k", ["all"], "arp", ["C"], 1.0)


def test_netdumplings_05_hub_flags():
    args = parse("nd-hub", "-a", "0.0.0.0", "-i", "1234", "-o", "1235", "-f", "3")
    assert (args.address, args.in_port, args.out_port, args.status_freq) == (
        "0.0.0.0", 1234, 1235, 3.0)


def test_netdumplings_05_print_flags():
    args = parse("nd-print", "--hub", "h:1", "-c", "DNSLookupChef", "-k", "k1", "-k", "k2",
                 "-n", "me", "--no-interval-dumplings", "--packet-dumplings", "--no-payload",
                 "--no-color")
    assert (args.hub, args.chef, args.kitchen, args.eater_name, args.interval_dumplings,
            args.packet_dumplings, args.payload, args.color) == (
        "h:1", ["DNSLookupChef"], ["k1", "k2"], "me", False, True, False, False)


@pytest.mark.parametrize("command", ["nd-hubstatus", "nd-hubdetails"])
def test_netdumplings_05_status_flags(command):
    args = parse(command, "--hub", "h:1", "-n", "watcher", "--color")
    assert (args.hub, args.eater_name, args.color) == ("h:1", "watcher", True)
    assert parse(command, "--no-color").color is False


def test_docs_table_is_the_parsers_table():
    text = (ROOT / "docs" / "cli" / "index.md").read_text(encoding="utf-8")
    assert flags.render() in text
    # each tool's --help points to it and names the letters it keeps
    for command in flags.COMMANDS:
        help_text = flags.build_parser(command).format_help()
        assert "docs/cli/index.md" in help_text and "Short flags" in help_text, command


@pytest.mark.parametrize("command", ["nd-sniff", "nd-print", "nd-hubstatus", "nd-hubdetails"])
def test_05_dash_h_hub_is_refused_not_taken_for_help(procs, command):
    """0.5's -h HOST:PORT would print the help and exit 0, running nothing: refused."""
    rc, p = _run(procs, command, "-h", "127.0.0.1:11348", timeout=15)
    assert rc == 2 and not p.out, (rc, p.out)
    assert any("-h is --help here; netdumplings 0.5's -h 127.0.0.1:11348 (the hub) is --hub "
               "127.0.0.1:11348" in line for line in p.err), p.err


@pytest.mark.parametrize("args, says", [
    (("-n", "-i", "lo"), "-n takes the kitchen's name here (netdumplings 0.5's -n); tcpdump's "
                         "-n (no name resolution) is not needed"),
    (("-i", "lo", "-p"), "-p takes the poke interval in seconds here (netdumplings 0.5's -p); "
                         "tcpdump's -p (no promiscuous mode) is not needed"),
])
def test_tcpdump_habits_that_mean_otherwise_here_are_explained(procs, args, says):
    rc, p = _run(procs, "nd-sniff", *args, timeout=15)
    assert rc == 2 and any(says in line for line in p.err), p.err


def test_hub_dash_i_with_an_interface_says_what_it_is(procs):
    rc, p = _run(procs, "nd-hub", "-i", "eth0", timeout=15)
    assert rc == 2
    assert any("'eth0' is not a port" in line and "-a ADDRESS" in line for line in p.err), p.err
    _no_traceback(p)


def test_dash_c_number_where_there_is_no_count(procs):
    rc, p = _run(procs, "nd-demo", "-c", "5", timeout=15)
    assert rc == 2 and any("-c names a chef" in line for line in p.err), p.err


def test_filter_given_twice_or_from_a_file(procs, tmp_path):
    rc, p = _run(procs, "nd-sniff", "-r", DNS, "--print", "-f", "udp", "port", "53")
    assert rc == 2 and any("the filter is given twice (-f and an expression)" in line
                           for line in p.err), p.err
    rc, p = _run(procs, "nd-sniff", "-r", DNS, "--print", "-F", str(tmp_path / "none"))
    assert rc == 2 and any(f"-F {tmp_path / 'none'}: No such file" in line
                           for line in p.err), p.err
    from netdumplings.cli.sniff import capture_filter
    f = tmp_path / "filter.bpf"
    f.write_text("# DNS only\nudp port 53   # the queries\n  or arp\n")
    args = parse("nd-sniff", "-F", str(f))
    assert capture_filter(args) == "udp port 53 or arp"
    assert capture_filter(parse("nd-sniff", "-i", "lo", "udp", "-c", "3", "port", "53")) == \
        "udp port 53"


def test_05_command_lines_run_against_a_real_hub(procs):
    """0.5's short flags as a 0.5 user's scripts have them, end to end: a hub on -i/-o/-f,
    a kitchen named with -n running one chef with -c, a printer filtering with -c/-k and
    named with -n, and nd-hubstatus named with -n, which the hub lists."""
    in_port, out_port = free_port(), free_port()
    hub = procs(nd_command("nd-hub") + ["-a", "127.0.0.1", "-i", str(in_port), "-o",
                                        str(out_port), "-f", "1", "--metrics-port", "0"])
    wait_port(in_port)
    wait_port(out_port)
    printer = procs(nd_command("nd-print") + ["--hub", f"127.0.0.1:{out_port}", "-n",
                                              "old-printer", "-c", "DNSLookupChef", "-k",
                                              "old-kitchen", "--no-color", "--count", "2"])
    time.sleep(1.0)
    status = procs(nd_command("nd-hubstatus") + ["--hub", f"127.0.0.1:{out_port}", "-n",
                                                 "old-status", "--no-color", "--once"])
    assert status.wait(20) == 0, status.err
    shown = "\n".join(status.out)
    assert "old-printer" in shown and "old-status" in shown, shown
    rc, kitchen = _run(procs, "nd-sniff", "-n", "old-kitchen", "-c", "DNSLookupChef", "-p", "0",
                       "-r", DNS, "--hub", f"127.0.0.1:{in_port}")
    assert rc == 0, kitchen.err
    assert printer.wait(20) == 0, printer.err
    out = "\n".join(printer.out)
    assert "old-kitchen/DNSLookupChef packet #1" in out, out
    _no_traceback(hub)



def test_05_color_flag_of_the_status_tools_bolds_headings():
    """0.5's --color/--no-color on nd-hubstatus and nd-hubdetails: headings bold or plain."""
    import io

    from netdumplings.eaters.hubdetails import HubDetailsEater
    from netdumplings.eaters.hubstatus import HubStatusEater
    status = {"server_uptime": 65, "total_dumplings_in": 3, "total_dumplings_out": 6,
              "dumpling_kitchen_count": 1, "dumpling_eater_count": 1,
              "dumpling_kitchens": [{"info_from_kitchen": {"kitchen_name": "k1"},
                                     "info_from_hub": {"host": "127.0.0.1", "port": 1}}],
              "dumpling_eaters": [{"info_from_eater": {"eater_name": "e1"},
                                   "info_from_hub": {"host": "127.0.0.1", "port": 2}}]}
    dumpling = {"metadata": {"chef": "SystemStatusChef", "kitchen": None,
                             "driver": "interval", "creation_time": 1.0}, "payload": status}
    for cls, kw in ((HubStatusEater, {"once": True}), (HubDetailsEater, {})):
        for color in (True, False):
            out = io.StringIO()
            eater = cls(out=out, color=color, name="t", hub="127.0.0.1:1", **kw)
            asyncio.run(eater.on_dumpling(dumpling))
            text = out.getvalue()
            assert ("k1" in text) and (("\x1b[1m" in text) == color), (cls, color, text)
