"""End to end: nd-hub, nd-sniff (live on lo, a file, stdin) and eaters as real processes."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from conftest import DATA, needs_capture, nd_command
from netdumplings.kitchen.offline import read_dumplings

CHEFS_FILE = str(Path(__file__).parent / "chefmods" / "udp_echo_chefs.py")


def _json_lines(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def _printer(procs, out_port: int, *args: str):
    p = procs(nd_command("nd-print") + ["--hub", f"127.0.0.1:{out_port}", "--json",
                                        "--no-reconnect", *args])
    p.wait_line("connected to")
    return p


def _comparable(d: dict) -> dict:
    md = {k: v for k, v in d["metadata"].items() if k != "creation_time"}
    return {"metadata": md, "payload": d["payload"]}


def _hostless(dumplings: list[dict]) -> list[dict]:
    """The kitchen's host differs between a kitchen process and the offline API."""
    for d in dumplings:
        d["metadata"].pop("host", None)
    return dumplings


def _printed(printer) -> list[dict]:
    return _hostless([_comparable(d) for d in _json_lines(printer.out)])


@needs_capture
def test_live_capture_one_dumpling_per_packet_in_order(hub_process, procs):
    in_port, out_port, _ = hub_process()
    n = 200
    printer = _printer(procs, out_port, "--chef", "UdpPayloadChef", "--count", str(n))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        kitchen = procs(nd_command("nd-sniff") + [
            "-i", "lo", "-f", f"udp port {port}", "-m", CHEFS_FILE, "-c", "UdpPayloadChef",
            "--hub", f"127.0.0.1:{in_port}", "-n", "live-kitchen", "-v"])
        kitchen.wait_line("sniffing lo")
        for i in range(n):
            s.sendto(f"packet {i}".encode(), ("127.0.0.1", port))
            if i % 20 == 0:
                time.sleep(0.002)
        assert printer.wait(20) == 0
    got = _json_lines(printer.out)
    assert [d["payload"]["text"] for d in got] == [f"packet {i}" for i in range(n)]
    seqs = [d["metadata"]["sequence"] for d in got]
    assert seqs == list(range(seqs[0], seqs[0] + n)), "sequence numbers have gaps"
    assert {d["metadata"]["kitchen"] for d in got} == {"live-kitchen"}
    assert all(d["metadata"]["capture_time"] > 0 for d in got)
    assert kitchen.terminate() == 0
    summary = kitchen.wait_line("packets,")
    assert f"{n} packets" in summary and "0 chef errors" in summary


@pytest.mark.parametrize("name", ["dns-queries.pcap", "corrupt/dns-queries.pcapng"])
@pytest.mark.parametrize("via_stdin", [False, True])
def test_read_file_and_stdin_through_hub(hub_process, procs, name, via_stdin):
    path = DATA / name
    want = [_comparable(d) for d in read_dumplings(path, ["DNSLookupChef", "PacketCountChef"],
                                                   kitchen_name="reader")]
    assert len(want) >= 7
    in_port, out_port, _ = hub_process()
    printer = _printer(procs, out_port, "--count", str(len(want)), "--kitchen", "reader")
    args = nd_command("nd-sniff") + ["-r", "-" if via_stdin else str(path), "-n", "reader",
                                     "-c", "DNSLookupChef", "-c", "PacketCountChef",
                                     "--hub", f"127.0.0.1:{in_port}"]
    if via_stdin:
        with open(path, "rb") as fh:
            kitchen = procs(args, stdin=fh)
            rc = kitchen.wait(30)
    else:
        kitchen = procs(args)
        rc = kitchen.wait(30)
    assert rc == 0, kitchen.err
    assert printer.wait(20) == 0
    assert _printed(printer) == _hostless(want)
    assert any("12 packets" in line for line in kitchen.err)


def test_msgpack_kitchen_link(hub_process, procs):
    path = DATA / "dns-queries.pcap"
    want = [_comparable(d) for d in read_dumplings(path, ["DNSLookupChef"], kitchen_name="mp")]
    in_port, out_port, hub = hub_process()
    printer = _printer(procs, out_port, "--count", str(len(want)), "--kitchen", "mp")
    kitchen = procs(nd_command("nd-sniff") + ["-r", str(path), "-n", "mp", "-c", "DNSLookupChef",
                                              "--encoding", "msgpack", "--hub",
                                              f"127.0.0.1:{in_port}"])
    assert kitchen.wait(30) == 0, kitchen.err
    assert printer.wait(20) == 0
    assert _printed(printer) == _hostless(want)


def test_print_mode_without_hub_matches_offline_api(procs):
    path = DATA / "dns-queries.pcap"
    want = [_comparable(d) for d in read_dumplings(path, ["DNSLookupChef"], kitchen_name="k")]
    p = procs(nd_command("nd-sniff") + ["-r", str(path), "--print", "-n", "k",
                                        "-c", "DNSLookupChef"])
    assert p.wait(30) == 0
    assert _printed(p) == _hostless(want)


def test_print_format_filters_and_pretty(hub_process, procs):
    path = DATA / "dns-queries.pcap"
    names = [d["payload"]["name"] for d in read_dumplings(path, ["DNSLookupChef"])
             if d["metadata"]["driver"] == "packet"]
    in_port, out_port, _ = hub_process()
    fmt = procs(nd_command("nd-print") + [
        "--hub", f"127.0.0.1:{out_port}", "--chef", "DNSLookupChef", "--no-interval-dumplings",
        "--format", "{kitchen}|{chef}|{payload[name]}|{payload[no_such_key]}|{sequence}",
        "--count", str(len(names)), "--no-reconnect"])
    pretty = procs(nd_command("nd-print") + [
        "--hub", f"127.0.0.1:{out_port}", "--chef", "PacketCountChef", "--no-color",
        "--count", "1", "--no-reconnect"])
    fmt.wait_line("connected to")
    pretty.wait_line("connected to")
    kitchen = procs(nd_command("nd-sniff") + ["-r", str(path), "-n", "fmt", "-c", "DNSLookupChef",
                                              "-c", "PacketCountChef", "--hub",
                                              f"127.0.0.1:{in_port}"])
    assert kitchen.wait(30) == 0
    assert fmt.wait(20) == 0 and pretty.wait(20) == 0
    rows = [line.split("|") for line in fmt.out]
    assert [r[2] for r in rows] == names
    assert all(r[0] == "fmt" and r[1] == "DNSLookupChef" and r[3] == "-" for r in rows)
    assert [int(r[4]) for r in rows] == sorted(int(r[4]) for r in rows)
    text = "\n".join(pretty.out)
    assert "fmt/PacketCountChef interval" in text and '"UDP": 12' in text


@needs_capture
def test_hubstatus_and_hubdetails_show_kitchen_and_eater(hub_process, procs):
    in_port, out_port, _ = hub_process(status_freq=0.5)
    eater = _printer(procs, out_port, "--eater-name", "watcher", "--chef", "Nothing")
    kitchen = procs(nd_command("nd-sniff") + ["-i", "lo", "-f", "udp port 9", "-n", "kitchen-7",
                                              "-c", "PacketCountChef", "--hub",
                                              f"127.0.0.1:{in_port}", "-v"])
    kitchen.wait_line("sniffing lo")
    deadline = time.monotonic() + 15
    status = details = ""
    while time.monotonic() < deadline:
        st = procs(nd_command("nd-hubstatus") + ["--hub", f"127.0.0.1:{out_port}", "--once"])
        st.wait(15)
        status = "\n".join(st.out)
        if "kitchen-7" in status:
            break
        time.sleep(0.3)
    assert "kitchens: 1" in status and "kitchen-7" in status, status
    assert "watcher" in status and "uptime" in status
    dt = procs(nd_command("nd-hubdetails") + ["--hub", f"127.0.0.1:{out_port}"])
    assert dt.wait(15) == 0
    details = "\n".join(dt.out)
    assert "kitchen 'kitchen-7'" in details and "PacketCountChef" in details
    assert "eater 'watcher'" in details
    kitchen.terminate()
    eater.kill()


def test_demo_runs_end_to_end(procs):
    p = procs(nd_command("nd-demo") if (Path(nd_command("nd-sniff")[0]).parent / "nd-demo").exists()
              else nd_command("nd-sniff")[:1] + ["-m", "netdumplings.cli.demo"])
    assert p.wait(60) == 0, p.err
    summary = p.wait_line("nd-demo: kitchen read")
    made = int(summary.split("made ")[1].split()[0])
    received = int(summary.split("received ")[1].split()[0])
    assert made == received > 100
    assert any("GET /menu -> 200 OK" in line for line in p.out)


def test_reading_a_file_waits_for_the_hub_instead_of_dropping(hub_process, procs):
    """A file can be read more slowly, so a kitchen reading one into a hub that takes
    dumplings more slowly than it makes them waits for room in its outbox rather than drop
    (here a 2 KB outbox: a handful of dumplings). Live capture cannot wait; it drops and
    counts (test_hub_resilience)."""
    path = DATA / "epics-ca.pcap"
    want = [_comparable(d) for d in read_dumplings(path, ["ChannelAccessChef"],
                                                   kitchen_name="slowhub")]
    assert len(want) > 100
    in_port, out_port, _ = hub_process()
    printer = _printer(procs, out_port, "--count", str(len(want)), "--kitchen", "slowhub")
    kitchen = procs(nd_command("nd-sniff") + ["-r", str(path), "-n", "slowhub",
                                              "-c", "ChannelAccessChef", "--outbox-mb", "0.002",
                                              "--hub", f"127.0.0.1:{in_port}"])
    assert kitchen.wait(60) == 0, kitchen.err
    assert printer.wait(30) == 0
    assert _printed(printer) == _hostless(want)
    assert not any("dropped" in line for line in kitchen.err), kitchen.err
