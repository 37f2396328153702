"""netdumplings 0.5's hub, kitchen and eater APIs running for real: ``DumplingHub().run()``
in its own process, ``DumplingKitchen.run()`` sniffing ``lo`` (filtered on a test port),
``DumplingEater`` over real WebSockets, a kitchen speaking 0.5's wire protocol, and 0.5's
documented example chef and ``PrinterEater`` (tests/chefmods/readme05_chefs.py,
printer_eater05.py) running unchanged.

Docstrings name the netdumplings 0.5.1 tests whose behaviour each test checks.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from scapy.all import DNS, DNSQR
from websockets.sync.client import connect

from conftest import DATA, assert_no_traceback, free_port, needs_capture, run_nd, wait_port
from netdumplings import (Dumpling, DumplingChef, DumplingDriver, DumplingEater,
                          DumplingKitchen)
from netdumplings.kitchen.chef import chefs_in_module
from netdumplings.exceptions import NetDumplingsError

MODS = Path(__file__).parent.parent / "chefmods"
README_CHEFS = str(MODS / "readme05_chefs.py")
PRINTER = str(MODS / "printer_eater05.py")
STATUS_KEYS = {"total_dumplings_in", "total_dumplings_out", "server_uptime",
               "dumpling_kitchen_count", "dumpling_eater_count", "dumpling_kitchens",
               "dumpling_eaters"}
HUB_CODE = ("import logging, sys; logging.basicConfig(level=logging.INFO); "
            "from netdumplings import DumplingHub; "
            "DumplingHub(address='127.0.0.1', in_port=int(sys.argv[1]), "
            "out_port=int(sys.argv[2]), status_freq=float(sys.argv[3])).run()")


@pytest.fixture
def hub05(procs):
    """``hub05(status_freq)`` -> (in_port, out_port, Proc) running ``DumplingHub.run()``."""
    def _start(status_freq: float = 60.0) -> tuple[int, int, Any]:
        in_port, out_port = free_port(), free_port()
        proc = procs([sys.executable, "-c", HUB_CODE, str(in_port), str(out_port),
                      str(status_freq)])
        wait_port(in_port)
        wait_port(out_port)
        return in_port, out_port, proc
    return _start


class Kitchen05Wire:
    """A kitchen as netdumplings 0.5's nd-sniff was on the wire: a hello naming it, then
    one JSON dumpling per message."""

    def __init__(self, in_port: int, name: str = "test_kitchen") -> None:
        self.ws = connect(f"ws://127.0.0.1:{in_port}")
        self.ws.send(json.dumps({"kitchen_name": name, "interface": "test_interface",
                                 "filter": "test_filter", "chefs": ["PacketCountChef"],
                                 "poke_interval": 5}))

    def send(self, chef: str, payload: Any, driver: str = "interval") -> None:
        self.ws.send(json.dumps({"metadata": {"chef": chef, "kitchen": "test_kitchen",
                                              "creation_time": time.time(), "driver": driver},
                                 "payload": payload}))

    def close(self) -> None:
        self.ws.close()


class Eating:
    """A 0.5 ``DumplingEater`` running ``run(count)`` in a thread, recording what it got."""

    def __init__(self, out_port: int, count: int | None, name: str = "test_eater",
                 chef_filter: list[str] | None = None) -> None:
        self.dumplings: list[Any] = []
        self.connected = threading.Event()
        self.lost: list[BaseException] = []
        self.eater = DumplingEater(name=name, hub=f"127.0.0.1:{out_port}",
                                   chef_filter=chef_filter, on_connect=self._connected,
                                   on_dumpling=self._dumpling, on_connection_lost=self._lost)
        self.thread = threading.Thread(target=self.eater.run, args=(count,), daemon=True)
        self.thread.start()
        assert self.connected.wait(10), "eater did not connect"

    async def _connected(self, uri: str, websocket: Any) -> None:
        self.connected.set()

    async def _dumpling(self, dumpling: Any) -> None:
        self.dumplings.append(dumpling)

    async def _lost(self, exc: BaseException) -> None:
        self.lost.append(exc)

    def join(self, timeout: float = 15.0) -> list[Any]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"eater still running with {len(self.dumplings)}"
        return self.dumplings


def _status(out_port: int) -> dict[str, Any]:
    """The next SystemStatusChef payload, read by a 0.5 eater."""
    return Eating(out_port, 1, name="status_reader",
                  chef_filter=["SystemStatusChef"]).join()[0].payload


def _printed_payloads(lines: list[str]) -> list[Any]:
    """What PrinterEater printed: indented JSON payloads separated by blank lines."""
    text = "\n".join(lines)
    text = text.split("Waiting for dumplings...", 1)[1]
    decoder, found, pos = json.JSONDecoder(), [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return found
        obj, pos = decoder.raw_decode(text, pos)
        found.append(obj)


# -- the documented examples, unchanged --------------------------------------------------


def test_readme_chef_in_nd_sniff_and_printer_eater(hub05, procs):
    """0.5's README chef (with the one DNS.qd change) in a real kitchen, through
    ``DumplingHub``, to 0.5's ``PrinterEater`` run as a script."""
    in_port, out_port, hub = hub05()
    printer = procs([sys.executable, PRINTER, f"127.0.0.1:{out_port}", "12"])
    printer.wait_line("Waiting for dumplings", stream="out")
    rc, kitchen = run_nd(procs, "nd-sniff", "-r", str(DATA / "dns-queries.pcap"), "-m",
                         README_CHEFS, "-c", "DNSLookupChef", "-n", "readme-kitchen",
                         "--hub", f"127.0.0.1:{in_port}")
    assert rc == 0, kitchen.err
    assert printer.wait(20) == 0, printer.err
    assert_no_traceback(printer)
    assert printer.out[0] == f"Connected to nd-hub at ws://127.0.0.1:{out_port}"
    payloads = _printed_payloads(printer.out)
    assert len(payloads) == 12 and all(set(p) == {"lookup"} for p in payloads)
    hosts = [p["lookup"]["hostname"] for p in payloads]
    assert hosts[0] == "www.dumplings.example." and "menu.dumplings.example." in hosts
    assert any("Done eating dumplings" in line for line in printer.err)
    assert any("kitchen readme-kitchen connected" in line for line in hub.err), hub.err


def _wait_sniffing(caplog: Any, timeout: float = 10.0) -> None:
    """Until DumplingKitchen.run() says its capture is open (packets sent after that are
    seen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any("Sniffing started" in r.getMessage() for r in caplog.records):
            return
        time.sleep(0.02)
    raise AssertionError("the kitchen did not start sniffing")


def _dns_query(name: str) -> bytes:
    return bytes(DNS(id=7, rd=1, qd=DNSQR(qname=name)))


@needs_capture
def test_05_pipeline_live_on_lo(hub05, procs, caplog):
    """0.5's whole pipeline: ``DumplingKitchen.run()`` sniffing lo with the README chef,
    its queue forwarded to ``DumplingHub`` as 0.5's nd-sniff did, ``PrinterEater`` eating."""
    in_port, out_port, _hub = hub05()
    printer = procs([sys.executable, PRINTER, f"127.0.0.1:{out_port}", "5"])
    printer.wait_line("Waiting for dumplings", stream="out")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        sport = s.getsockname()[1]
        caplog.set_level(logging.INFO, logger="netdumplings.dumplingkitchen")
        q: queue.Queue = queue.Queue()
        kitchen = DumplingKitchen(q, name="live05", interface="lo",
                                  sniffer_filter=f"udp and src port {sport} and dst port 53",
                                  chef_poke_interval=None)
        chefs_in_module(README_CHEFS)["DNSLookupChef"](kitchen=kitchen)
        running = threading.Thread(target=kitchen.run, daemon=True)
        running.start()
        wire = Kitchen05Wire(in_port, "live05")

        def forward() -> None:
            while running.is_alive() or not q.empty():
                try:
                    wire.ws.send(q.get(timeout=0.1))
                except queue.Empty:
                    pass

        forwarder = threading.Thread(target=forward, daemon=True)
        forwarder.start()
        _wait_sniffing(caplog)
        names = [f"q{i}.compat05.example" for i in range(5)]
        for name in names:
            s.sendto(_dns_query(name), ("127.0.0.1", 53))
        rc = printer.wait(20)
        kitchen.stop()
        running.join(10)
        forwarder.join(10)
        wire.close()
    assert rc == 0, printer.err
    payloads = _printed_payloads(printer.out)
    assert [p["lookup"]["hostname"] for p in payloads] == [n + "." for n in names]
    assert not running.is_alive()


# -- DumplingKitchen.run() ---------------------------------------------------------------


class UdpLoadChef(DumplingChef):
    def packet_handler(self, packet):
        if packet.haslayer("UDP"):
            return {"load": bytes(packet["UDP"].payload).decode()}

    def interval_handler(self, interval=None):
        return {"interval": interval}


class BrokenPacketChef(DumplingChef):
    def packet_handler(self, packet):
        raise KeyError("broken packet handler")


class BrokenIntervalChef(DumplingChef):
    def interval_handler(self, interval=None):
        raise KeyError("broken interval handler")


def _run_kitchen(kitchen: DumplingKitchen, port: int, loads: list[str], until: Any,
                 caplog: Any) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    caplog.set_level(logging.INFO, logger="netdumplings.dumplingkitchen")
    thread = threading.Thread(target=kitchen.run, daemon=True)
    thread.start()
    _wait_sniffing(caplog)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for load in loads:
            s.sendto(load.encode(), ("127.0.0.1", port))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not until(got):
        try:
            text = kitchen.dumpling_queue.get(timeout=0.1)
        except queue.Empty:
            continue
        assert isinstance(text, str)  # 0.5 queued JSON text
        got.append(json.loads(text))
    kitchen.stop()
    thread.join(10)
    assert not thread.is_alive()
    while not kitchen.dumpling_queue.empty():
        got.append(json.loads(kitchen.dumpling_queue.get()))
    return got


@needs_capture
def test_kitchen_run_pokes_and_survives_broken_chefs(caplog):
    """0.5: test_dumplingkitchen.py::test_chef_poking, ::test_chef_poking_with_broken_handler,
    ::test_dumpling_send, ::test_poke_thread_started,
    ::test_sniffer_started_with_specified_interface. Through run(), also what 0.5's
    _process_packet tests (excluded from the count) checked."""
    port = free_port(socket.SOCK_DGRAM)
    kitchen = DumplingKitchen(queue.Queue(), name="k05", interface="lo",
                              sniffer_filter=f"udp and dst port {port}",
                              chef_poke_interval=0.2)
    UdpLoadChef(kitchen=kitchen)
    BrokenPacketChef(kitchen=kitchen)
    BrokenIntervalChef(kitchen=kitchen)
    loads = [f"load {i}" for i in range(5)]

    def enough(got: list[dict[str, Any]]) -> bool:
        packets = [d for d in got if d["metadata"]["driver"] == "packet"]
        pokes = [d for d in got if d["metadata"]["driver"] == "interval"]
        return len(packets) >= 5 and len(pokes) >= 3

    with caplog.at_level(logging.ERROR, logger="netdumplings.kitchen"):
        got = _run_kitchen(kitchen, port, loads, enough, caplog)
    packets = [d for d in got if d["metadata"]["driver"] == "packet"]
    pokes = [d for d in got if d["metadata"]["driver"] == "interval"]
    assert [d["payload"] for d in packets] == [{"load": x} for x in loads]
    assert len(pokes) >= 3 and all(d["payload"] == {"interval": 0.2} for d in pokes)
    for d in got:  # 0.5's metadata, on every dumpling
        assert d["metadata"]["chef"] == "UdpLoadChef" and d["metadata"]["kitchen"] == "k05"
        assert isinstance(d["metadata"]["creation_time"], float)
    # the broken chef's errors are logged and counted; nothing else is lost
    assert kitchen.chef_errors["BrokenPacketChef"] == 5
    assert kitchen.chef_errors["BrokenIntervalChef"] >= 3
    assert any("BrokenPacketChef: packet_handler raised" in r.getMessage()
               for r in caplog.records)
    assert any("BrokenIntervalChef: interval_handler raised" in r.getMessage()
               for r in caplog.records)


@needs_capture
def test_kitchen_run_on_all_interfaces_without_pokes(caplog):
    """0.5: test_dumplingkitchen.py::test_poke_thread_not_started,
    ::test_sniffer_started_with_all_interface"""
    port = free_port(socket.SOCK_DGRAM)
    kitchen = DumplingKitchen(queue.Queue(), interface="all",
                              sniffer_filter=f"udp and dst port {port}",
                              chef_poke_interval=None)
    UdpLoadChef(kitchen=kitchen)
    got = _run_kitchen(kitchen, port, ["a", "b", "c"], lambda g: len(g) >= 3, caplog)
    # run() has returned and its queue is drained: no poke, not even at the end
    assert [d["payload"] for d in got] == [{"load": "a"}, {"load": "b"}, {"load": "c"}]
    assert {d["metadata"]["driver"] for d in got} == {"packet"}


def test_kitchen_run_logs_a_capture_that_cannot_start(caplog):
    """A capture that cannot start is an error in the log and run() returns, as 0.5's."""
    kitchen = DumplingKitchen(queue.Queue(), interface="nosuch0")
    with caplog.at_level(logging.ERROR, logger="netdumplings.dumplingkitchen"):
        kitchen.run()
    assert any("nosuch0" in r.getMessage() for r in caplog.records)
    assert kitchen.dumpling_queue.empty()


# -- DumplingHub.run() --------------------------------------------------------------------


def test_hub_run_serves_until_ctrl_c(hub05):
    """0.5: test_dumplinghub.py::test_run, ::test_keyboard_interrupt"""
    in_port, out_port, hub = hub05()
    hub.wait_line(f"Dumplings in: ws://127.0.0.1:{in_port}  out: ws://127.0.0.1:{out_port}")
    assert any("Dumpling hub initiated; waiting for connections" in line for line in hub.err)
    hub.p.send_signal(signal.SIGINT)
    assert hub.wait(10) == 0
    assert any("WARNING" in line and "Caught keyboard interrupt" in line for line in hub.err)
    assert any("Dumpling hub signing off" in line for line in hub.err)
    assert_no_traceback(hub)


def test_hub_run_that_cannot_listen_raises():
    """0.5: test_dumplinghub.py::test_websocket_error"""
    from netdumplings import DumplingHub
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        hub = DumplingHub(address="127.0.0.1", in_port=busy.getsockname()[1],
                          out_port=free_port())
        with pytest.raises(NetDumplingsError, match="Cannot instantiate dumpling hub"):
            hub.run()


def test_hub_status_dumplings(hub05):
    """0.5: test_dumplinghub.py::test_start_status, ::test_announce_system_status"""
    _in, out_port, _hub = hub05(status_freq=0.3)
    first = Eating(out_port, 2, name="one", chef_filter=["SystemStatusChef"])
    second = Eating(out_port, 2, name="two", chef_filter=["SystemStatusChef"])
    for got in (first.join(), second.join()):
        assert len(got) == 2
        for d in got:
            assert d.chef_name == "SystemStatusChef" and d.driver is DumplingDriver.interval
            assert STATUS_KEYS <= set(d.payload)
            assert d.payload["dumpling_kitchen_count"] == 0 and d.payload["dumpling_kitchens"] == []
            assert d.payload["total_dumplings_in"] == 0
            assert isinstance(d.payload["server_uptime"], float)
        assert got[1].creation_time - got[0].creation_time >= 0.25  # every status_freq
    # a status made while both were connected counts and names both
    both = [d.payload for d in second.dumplings if d.payload["dumpling_eater_count"] == 2]
    assert both, [d.payload["dumpling_eater_count"] for d in second.dumplings]
    assert {e["info_from_eater"]["eater_name"] for e in both[0]["dumpling_eaters"]} == {
        "one", "two"}


def test_hub_relays_a_05_kitchen_to_every_eater(hub05):
    """0.5: test_dumplinghub.py::test_dumpling_emitter, ::test_eater_connection_closed.
    Also what 0.5's hub _grab_dumplings tests (excluded from the count) checked: every
    eater gets each dumpling, an invalid one is logged and dropped, a closed kitchen is
    forgotten."""
    in_port, out_port, hub = hub05(status_freq=0.2)
    eaters = [Eating(out_port, 3, name=f"e{i}", chef_filter=["PacketCountChef"])
              for i in range(2)]
    kitchen = Kitchen05Wire(in_port)
    kitchen.send("PacketCountChef", {"packet_counts": {"IP": 1}})
    kitchen.ws.send("{invalid dumpling")
    kitchen.send("PacketCountChef", {"packet_counts": {"IP": 2}})
    kitchen.send("PacketCountChef", {"packet_counts": {"IP": 3}}, driver="packet")
    for eating in eaters:
        got = eating.join()
        assert [d.payload["packet_counts"]["IP"] for d in got] == [1, 2, 3]
        assert [d.driver for d in got] == [DumplingDriver.interval] * 2 + [DumplingDriver.packet]
        assert all(d.kitchen == "test_kitchen" for d in got)
    hub.wait_line("invalid")
    status = _status(out_port)
    assert status["total_dumplings_in"] == 3 and status["total_dumplings_out"] >= 6
    assert status["dumpling_kitchen_count"] == 1
    info = status["dumpling_kitchens"][0]
    assert info["info_from_kitchen"]["kitchen_name"] == "test_kitchen"
    assert info["info_from_hub"]["host"] == "127.0.0.1"
    # the eaters that left and the kitchen that closes are forgotten
    kitchen.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = _status(out_port)
        if status["dumpling_kitchen_count"] == 0 and status["dumpling_eater_count"] == 1:
            break
    assert status["dumpling_kitchen_count"] == 0
    assert status["dumpling_eater_count"] == 1  # only the status reader itself


# -- DumplingEater.run() ------------------------------------------------------------------


def test_eater_gets_05_dumplings(hub05):
    """0.5: test_dumplingeater.py::test_run. Also what 0.5's eater _grab_dumplings tests
    (excluded from the count) checked: a dumpling count, a chef filter, a Dumpling per
    dumpling."""
    in_port, out_port, _hub = hub05()
    every = Eating(out_port, 4, name="every")
    dns_only = Eating(out_port, 2, name="dns_only", chef_filter=["DNSLookupChef"])
    kitchen = Kitchen05Wire(in_port, "default_kitchen")
    for i in range(3):
        kitchen.send("PacketCountChef", {"packet_counts": {"UDP": i}})
        kitchen.send("DNSLookupChef", {"lookup": {"hostname": f"h{i}"}}, driver="packet")
    got = every.join()
    assert [d.chef_name for d in got] == ["PacketCountChef", "DNSLookupChef"] * 2
    dns = dns_only.join()
    assert [d.payload["lookup"]["hostname"] for d in dns] == ["h0", "h1"]
    for d in got + dns:
        assert isinstance(d, Dumpling) and isinstance(d, dict)
        assert d.payload == d["payload"] and d.chef == d["metadata"]["chef"]
        assert d.driver in (DumplingDriver.packet, DumplingDriver.interval)
        assert isinstance(d.creation_time, float)
    kitchen.close()


def test_eater_without_a_hub_warns_and_returns(caplog):
    """0.5: test_dumplingeater.py::test_oserror"""
    eater = DumplingEater(name="lonely", hub=f"127.0.0.1:{free_port()}")
    with caplog.at_level(logging.INFO, logger="netdumplings.dumplingeater"):
        eater.run(dumpling_count=1)
    messages = [r.getMessage() for r in caplog.records]
    assert "lonely: Running dumpling eater" in messages
    assert ("lonely: There was a problem with the dumpling hub connection. Is nd-hub "
            "available?") in messages
    assert not any("Done eating" in m for m in messages)  # it never connected


def test_eater_with_an_uncallable_on_dumpling(caplog, hub05):
    """0.5: test_dumplingeater.py::test_on_dumpling_not_callable"""
    _in, out_port, hub = hub05()
    eater = DumplingEater(name="confused", hub=f"127.0.0.1:{out_port}",
                          on_dumpling="string")  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="netdumplings.dumplingeater"):
        eater.run()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["confused: on_dumpling handler is not callable"]
    assert not any("confused" in line for line in hub.err)  # it never connected


def test_eater_ctrl_c(hub05, procs):
    """0.5: test_dumplingeater.py::test_keyboard_interrupt, ::test_interrupt_handler"""
    _in, out_port, _hub = hub05()
    printer = procs([sys.executable, PRINTER, f"127.0.0.1:{out_port}", "1000"])
    printer.wait_line("Waiting for dumplings", stream="out")
    printer.p.send_signal(signal.SIGINT)
    assert printer.wait(10) == 0
    assert_no_traceback(printer)
    assert any("Done eating dumplings." in line for line in printer.err), printer.err


def test_eater_connection_lost(hub05):
    """What 0.5's eater test_connection_closed (a _grab_dumplings test, excluded from the
    count) checked: the hub going away calls on_connection_lost and run() returns."""
    _in, out_port, hub = hub05()
    eating = Eating(out_port, None, name="abandoned")
    hub.kill()
    eating.join()
    assert len(eating.lost) == 1 and eating.dumplings == []
