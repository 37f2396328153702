"""The chef API as a new user meets it: the mistakes they make are one clear error naming
the chef, and what the docs say chefs get is what they get. Real kitchens, real captures."""

from __future__ import annotations

import datetime
import json
import logging
import sys
from pathlib import Path

import pytest

from conftest import DATA, assert_no_traceback, run_nd
from netdumplings import DatagramChef, Direction, DumplingChef, StreamChef
from netdumplings.kitchen.chef import (ChefLoadError, ChefOptions, ChefOptionsError, ChefSetupError,
                                       chefs_in_module)
from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.kitchen.offline import read_dumplings
from netdumplings.kitchen.registry import load_chefs

MODS = Path(__file__).parent.parent / "chefmods"
sys.path.insert(0, str(Path(__file__).parent.parent))
import chefmods.mistake_chefs as mistakes  # noqa: E402

DNS = DATA / "dns-queries.pcap"
HTTP = DATA / "http1-keepalive.pcap"


def _payloads(source, chefs, **kw):
    return [d["payload"] for d in read_dumplings(source, chefs, **kw)]


# -- mistakes in a chef class: one error, naming the chef, when it is made ----------------

@pytest.mark.parametrize("chef, says", [
    (mistakes.ForgotPacketArgChef,
     "ForgotPacketArgChef: packet_handler(self) cannot be called as packet_handler(self, packet)"),
    (mistakes.ForgotSuperChef, "ForgotSuperChef: __init__ does not call super().__init__"),
    (mistakes.RaisingInitChef,
     "RaisingInitChef: __init__ raised RuntimeError: cannot open my database"),
    (mistakes.AsyncDataChef, "AsyncDataChef: on_data is async"),
])
def test_broken_chef_is_one_clear_error(chef, says):
    # Before: the wrong signature was 12 logged TypeErrors and no dumpling, the missing
    # super().__init__ a chef that silently never ran, the __init__ error did not name the
    # chef, and the async handler an encode error per datagram.
    with pytest.raises(ChefSetupError) as err:
        list(read_dumplings(DNS, [mistakes.GoodUdpChef, chef]))
    assert str(err.value).startswith(says), str(err.value)


def test_broken_chef_on_the_command_line(procs):
    for chef, says in (("ForgotSuperChef", "does not call super().__init__"),
                       ("ForgotPacketArgChef", "cannot be called as packet_handler(self, packet)")):
        rc, p = run_nd(procs, "nd-sniff", "-r", str(DNS), "-m", str(MODS / "mistake_chefs.py"),
                       "-c", chef, "--print")
        assert rc == 2, p.err
        assert any(f"{chef}: " in line and says in line for line in p.err), p.err
        assert not p.out
        assert_no_traceback(p)
    # the good chef of the same file runs
    rc, p = run_nd(procs, "nd-sniff", "-r", str(DNS), "-m", str(MODS / "mistake_chefs.py"),
                   "-c", "GoodUdpChef", "--print")
    assert rc == 0 and len(p.out) == 12


def test_init_error_keeps_its_cause():
    with pytest.raises(ChefSetupError) as err:
        mistakes.RaisingInitChef()
    assert isinstance(err.value.__cause__, RuntimeError)


def test_subclass_init_chain_is_checked_once():
    class Base(DumplingChef):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.base = True

    class Leaf(Base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.leaf = True

        def packet_handler(self, packet):
            return {"ok": self.base and self.leaf}

    class Plain(Base):  # no __init__ of its own
        def packet_handler(self, packet):
            return None

    assert _payloads(DNS, [Leaf, Plain])[:1] == [{"ok": True}]


def test_bad_option_names_chef_and_option(procs):
    class LineChef(StreamChef):
        default_ports = (8080,)

        class Options(ChefOptions):
            max_line: int = 100

    with pytest.raises(ChefOptionsError) as err:  # a ValueError, as before
        list(read_dumplings(HTTP, [LineChef], chef_options={"LineChef": {"max_line": "abc"}}))
    assert str(err.value).startswith("LineChef: option max_line='abc': ")
    with pytest.raises(ValueError, match="LineChef: unknown option 'maxline'"):
        list(read_dumplings(HTTP, [LineChef], chef_options={"LineChef": {"maxline": "1"}}))

    rc, p = run_nd(procs, "nd-sniff", "-r", str(DNS), "-c", "DNSLookupChef",
                   "-o", "DNSLookupChef.ports=abc", "--print")
    assert rc == 2
    assert any("DNSLookupChef: option ports='abc'" in line for line in p.err), p.err
    assert_no_traceback(p)


def test_flow_chef_that_follows_nothing_is_warned_about(caplog):
    class NoPortsChef(StreamChef):
        def on_data(self, flow, direction, data, timestamp):
            return {"n": len(data)}

    with caplog.at_level(logging.WARNING):
        assert _payloads(HTTP, [NoPortsChef]) == []
    assert any("NoPortsChef follows no flows" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert len(_payloads(HTTP, [NoPortsChef], chef_options={"NoPortsChef": {"ports": 8080}}))
    assert not caplog.records


# -- finding chefs in modules -------------------------------------------------------------

def test_assignable_to_kitchen_hides_only_the_class_that_sets_it(procs):
    found = chefs_in_module(str(MODS / "family_chefs.py"))
    assert "UdpCounterChef" in found and "CountingBase" not in found
    rc, p = run_nd(procs, "nd-sniff", "-r", str(DNS), "-m", str(MODS / "family_chefs.py"),
                   "--print")
    assert rc == 0, p.err
    chefs = [json.loads(line)["metadata"]["chef"] for line in p.out]
    assert chefs.count("UdpCounterChef") == 1  # the end-of-file poke
    # A bundled chef it subclasses is not run a second time as itself.
    assert "DNSLookupChef" not in chefs and chefs.count("MyDnsChef") == 7
    # listing the chefs, then running them, imports the file once
    assert sum("family_chefs imported" in line for line in p.err) == 1, p.err

    with pytest.raises(ChefLoadError, match="OnlyABase set assignable_to_kitchen = False"):
        load_chefs([str(MODS / "hidden_only_chefs.py")])


def test_module_that_only_reexports_runs_what_it_exports():
    assert list(chefs_in_module(str(MODS / "reexport_chefs.py"))) == ["DNSLookupChef"]


def test_same_chef_name_in_two_modules_is_an_error(procs):
    a = str(MODS / "dup_a" / "same_name_chefs.py")
    b = str(MODS / "dup_b" / "same_name_chefs.py")
    rc, p = run_nd(procs, "nd-sniff", "-r", str(DNS), "-m", a, "-m", b, "--print")
    assert rc == 2 and not p.out  # before: only b's ran, silently
    assert any("chef SameNameChef is defined twice" in line and a in line and b in line
               for line in p.err), p.err
    assert_no_traceback(p)

    ca, cb = chefs_in_module(a)["SameNameChef"], chefs_in_module(b)["SameNameChef"]
    assert ca is not cb
    with pytest.raises(ChefSetupError, match="SameNameChef: two chefs of that name"):
        list(read_dumplings(DNS, [ca, cb]))
    with pytest.raises(ChefSetupError, match="already has a chef named SameNameChef"):
        Kitchen("k", [ca, cb], poke_interval=None)


# -- the offline API ----------------------------------------------------------------------

def test_offline_chef_options_must_name_a_running_chef_class():
    class BigChef(DumplingChef):
        class Options(ChefOptions):
            min_bytes: int = 1000

        def packet_handler(self, packet):
            if len(packet) >= self.options.min_bytes:
                return len(packet)

    with pytest.raises(ChefSetupError, match="Bigchef: chef_options for a chef that is not "
                                             "running"):  # before: ignored, 0 dumplings
        list(read_dumplings(DNS, [BigChef], chef_options={"Bigchef": {"min_bytes": 100}}))
    with pytest.raises(ChefSetupError, match="given as an instance"):
        list(read_dumplings(DNS, [BigChef()], chef_options={"BigChef": {"min_bytes": 100}}))
    assert len(_payloads(DNS, [BigChef], chef_options={"BigChef": {"min_bytes": 100}})) == 9
    assert len(_payloads(DNS, [BigChef(min_bytes=100)])) == 9


def test_offline_takes_a_single_chef():
    # before: TypeError 'type' object is not iterable / unknown chef 'D'
    assert len(_payloads(DNS, mistakes.GoodUdpChef)) == 12
    assert len(_payloads(DNS, "DNSLookupChef")) == 7


# -- what handlers return, and what chefs get ---------------------------------------------

def test_return_values_as_documented():
    class Returns(DumplingChef):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.i = 0

        def packet_handler(self, packet):
            self.i += 1
            return [None, {}, [], [1, 2], b"\xff\xfe", b"text", {3}, (4, 5),
                    datetime.datetime(2024, 1, 2, 3, 4, 5), float("nan"), object(), "s"][self.i - 1]

        def interval_handler(self, interval=None):
            yield '{"json": "string"}'   # a 0.5 chef's JSON string stays a string
            yield None                  # skipped
            self._logger.debug("0.5 chefs log through self._logger")
            yield {"interval": interval}

    kitchen_out = []
    kitchen = Kitchen("k", [Returns], poke_interval=None,
                      sink=lambda d, b: kitchen_out.append(json.loads(b)))
    from netdumplings.capture.sources import PcapSource
    for packet in PcapSource(DNS):
        kitchen.process(packet)
    kitchen.finish()
    payloads = [d["payload"] for d in kitchen_out]
    assert payloads == [{}, [], [1, 2], {"$base64": "//4="}, "text", [3], [4, 5],
                        "2024-01-02T03:04:05", None, "s",
                        '{"json": "string"}', {"interval": None}]
    assert kitchen.stats.encode_errors == 1 and kitchen.chef_errors == {"Returns": 1}


def test_detect_claims_from_the_chunk_it_said_yes_to():
    """The docs: earlier chunks are not replayed to a chef whose detect says yes later."""
    class LateChef(StreamChef):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.asked = []

        def detect(self, flow, direction, data):
            self.asked.append((direction, data[:4]))
            return direction is Direction.SERVER_TO_CLIENT

        def on_open(self, flow):
            return {"open": flow.first_seen}

        def on_data(self, flow, direction, data, timestamp):
            return {"dir": str(direction), "head": data[:4], "ts": timestamp}

        def on_close(self, flow, reason):
            return {"close": reason, "last": flow.last_seen}

    chef = LateChef()
    out = list(read_dumplings(HTTP, [chef]))
    assert chef.asked[0] == (Direction.CLIENT_TO_SERVER, b"GET ")
    assert out[1]["payload"]["head"] == "HTTP"  # the request before it is not replayed
    assert out[0]["metadata"]["capture_time"] == out[1]["metadata"]["capture_time"]
    assert all(d["metadata"]["capture_time"] == d["payload"]["ts"] for d in out[1:-1])
    assert out[-1]["payload"]["close"] == "fin"
    assert out[-1]["metadata"]["capture_time"] == out[-1]["payload"]["last"]


def test_datagram_chef_closes_at_end_of_capture():
    class Dns(DatagramChef):
        default_ports = (53,)

        def on_data(self, flow, direction, data, timestamp):
            st = self.flow_state(flow)
            st.append(str(direction))

        def new_flow_state(self, flow):
            return []

        def on_close(self, flow, reason):
            return {"reason": str(reason), "seen": self.flow_state(flow)}

    out = _payloads(DNS, [Dns])
    assert len(out) == 6
    assert all(p == {"reason": "end", "seen": ["client_to_server", "server_to_client"]}
               for p in out)
