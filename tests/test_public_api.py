"""The public API, listed: a name here that disappears (or moves without its old import
path) fails this test. Adding a name means adding it here too, on purpose.

Public: the names of ``netdumplings`` itself, each stage package's ``__all__``, the bundled
chefs and eaters by their package paths, netdumplings 0.5's names, and 1.0.0.dev0's flat
module paths (kept, with a DeprecationWarning, by ``netdumplings._moved``).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import netdumplings

TOP = {
    # the chef API
    "ChefOptions", "ChefSetupError", "CloseReason", "DatagramChef", "Direction", "DumplingChef",
    "FlowChef", "FlowChefOptions", "StreamChef",
    # each stage's main class
    "Kitchen", "read_dumplings", "Hub", "HubSender",
    # netdumplings 0.5
    "Dumpling", "DumplingDriver", "DumplingKitchen", "DumplingHub", "DumplingEater",
    "NetDumplingsError", "InvalidDumpling", "InvalidDumplingPayload",
    "__version__",
}

STAGES = {
    "netdumplings.capture": {"CaptureError", "Dumper", "FilterError", "LiveSource", "NsPacket",
                             "Packet", "PcapSource", "list_interfaces"},
    "netdumplings.flows": {"CloseReason", "Direction", "Flow", "FlowTable", "TcpDirection",
                           "format_endpoint"},
    "netdumplings.kitchen": {"ChefLoadError", "ChefOptions", "ChefOptionsError", "ChefSetupError",
                             "CloseReason", "DatagramChef", "Direction", "DumplingChef",
                             "FlowChef", "FlowChefOptions", "Kitchen", "KitchenStats",
                             "ShardedKitchen", "StreamChef", "WorkerDied", "bundled_chefs",
                             "iter_payloads", "load_chefs", "read_dumplings"},
    "netdumplings.wire": {"DEFAULT_HOST", "IN_PORT", "METRICS_PORT", "NOTICE_CHEF", "OUT_PORT",
                          "PROTOCOL", "STATUS_CHEF", "DumplingMetadata", "EaterHello",
                          "HubSender", "KitchenHello", "Welcome", "decode", "encode",
                          "json_schema"},
    "netdumplings.hub": {"Hub", "NatsBackplane"},
    "netdumplings.eater": {"DumplingEater", "HubRefused", "HubUnavailable"},
}

#: The bundled chefs, by the module users import them from.
CHEFS = {
    "netdumplings.chefs.arp": {"ARPChef"},
    "netdumplings.chefs.channel_access": {"ChannelAccessChef"},
    "netdumplings.chefs.dns": {"DNSLookupChef"},
    "netdumplings.chefs.fluentd": {"FluentdForwardChef"},
    "netdumplings.chefs.forward": {"PacketForwardChef"},
    "netdumplings.chefs.grpc": {"GrpcChef"},
    "netdumplings.chefs.http1": {"Http1Chef"},
    "netdumplings.chefs.http2": {"Http2Chef"},
    "netdumplings.chefs.msgpack_stream": {"MsgpackChef"},
    "netdumplings.chefs.packetcount": {"PacketCountChef"},
    "netdumplings.chefs.tcpconn": {"TcpConnChef"},
    "netdumplings.chefs.zmtp": {"ZmtpChef"},
}

#: Each chef package's sans-I/O decoder, usable on its own (bytes in, events out).
DECODERS = {
    "netdumplings.chefs.channel_access": {"ChannelAccessDecoder"},
    "netdumplings.chefs.dns": {"DnsDecoder", "DnsTcpFramer", "parse_message"},
    "netdumplings.chefs.fluentd": {"FluentdForwardDecoder"},
    "netdumplings.chefs.forward": {"iter_frames", "decode_frame", "BatchTracker"},
    "netdumplings.chefs.grpc": {"GrpcMessages"},
    "netdumplings.chefs.http1": {"Http1Decoder"},
    "netdumplings.chefs.http2": {"Http2Decoder"},
    "netdumplings.chefs.msgpack_stream": {"MsgpackStreamDecoder"},
    "netdumplings.chefs.zmtp": {"ZmtpDecoder"},
}

EATERS = {
    "netdumplings.eaters.print": {"PrintEater", "Printer", "pretty", "status_line",
                                  "format_dumpling"},
    "netdumplings.eaters.hubstatus": {"HubStatusEater", "render_status"},
    "netdumplings.eaters.hubdetails": {"HubDetailsEater", "render_details"},
    "netdumplings.eaters.cook": {"CookEater"},
    "netdumplings.eaters.dump": {"DumpEater"},
    "netdumplings.eaters.web_server": {"WebServer"},
}

COMPAT05 = {
    "netdumplings.exceptions": {"NetDumplingsError", "InvalidDumpling", "InvalidDumplingPayload"},
    "netdumplings.dumplingchefs": {"ARPChef", "DNSLookupChef", "PacketCountChef"},
    "netdumplings.compat.dumpling": {"Dumpling", "DumplingDict", "DumplingDriver"},
}

#: 1.0.0.dev0's flat modules and a name each of them had.
OLD_PATHS = {
    "netdumplings.chef": "DumplingChef", "netdumplings.registry": "bundled_chefs",
    "netdumplings.offline": "read_dumplings", "netdumplings.sources": "PcapSource",
    "netdumplings.packet": "Packet", "netdumplings.pcapwriter": "Dumper",
    "netdumplings.dumpling": "encode", "netdumplings.sender": "HubSender",
    "netdumplings.workers": "ShardedKitchen", "netdumplings.backplane": "NatsBackplane",
    "netdumplings.reassembly": "TcpDirection", "netdumplings.tunnels": "decapsulate",
    "netdumplings.defrag": "Defragmenter", "netdumplings.linktypes": "describe",
    "netdumplings.hub_queues": "QueueBudget",
}


def test_top_level_names():
    assert set(netdumplings.__all__) == TOP
    for name in TOP:
        assert getattr(netdumplings, name) is not None, name


@pytest.mark.parametrize("package", sorted(STAGES))
def test_stage_names(package):
    module = importlib.import_module(package)
    assert set(module.__all__) == STAGES[package]
    for name in STAGES[package]:
        assert getattr(module, name) is not None, f"{package}.{name}"
    assert set(STAGES[package]) <= set(dir(module))


@pytest.mark.parametrize("table", [CHEFS, DECODERS, EATERS, COMPAT05],
                         ids=["chefs", "decoders", "eaters", "compat05"])
def test_bundled_and_05_names(table):
    for package, names in table.items():
        module = importlib.import_module(package)
        for name in names:
            assert getattr(module, name, None) is not None, f"{package}.{name}"


def test_every_bundled_chef_is_listed():
    from netdumplings.kitchen.registry import bundled_chefs
    listed = {name for names in CHEFS.values() for name in names}
    assert set(bundled_chefs()) == listed
    for package, names in CHEFS.items():
        module = importlib.import_module(package)
        for name in names:
            assert bundled_chefs()[name] is getattr(module, name)


def test_each_decoder_is_its_packages_decoder_module():
    """A decoder named by its package is the one in the package's ``decoder`` module."""
    for package, names in DECODERS.items():
        decoder = importlib.import_module(package + ".decoder")
        for name in names:
            assert getattr(importlib.import_module(package), name) is getattr(decoder, name)


def test_the_same_object_under_every_name():
    from netdumplings.flows import Direction
    from netdumplings.kitchen import DumplingChef, Kitchen
    assert netdumplings.DumplingChef is DumplingChef and netdumplings.Kitchen is Kitchen
    assert netdumplings.Direction is Direction


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_old_flat_paths_still_import_with_a_warning(old):
    """Run in a fresh interpreter: the warning fires once, on first import."""
    code = (f"import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            f"import netdumplings\n"
            f"try:\n    import {old}\nexcept DeprecationWarning as w:\n    print('WARNED', w)\n"
            f"warnings.simplefilter('ignore')\n"
            f"from {old} import {OLD_PATHS[old]}\n"
            f"import importlib, sys\n"
            f"print(sys.modules[{old!r}].__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    warned, real = r.stdout.strip().split("\n")
    assert warned.startswith(f"WARNED {old} moved to netdumplings.")
    assert real == warned.split(" moved to ")[1].split(";")[0]


def test_old_path_is_the_same_module():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from netdumplings.chef import DumplingChef
        import netdumplings.sources as old_sources
    import netdumplings.capture.sources as sources
    assert DumplingChef is netdumplings.DumplingChef and old_sources is sources


def test_importing_the_package_stays_light():
    code = ("import sys, netdumplings; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('netdumplings', 'scapy', 'websockets'))))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True, timeout=60).stdout.split())
    assert not any(m.startswith(("scapy", "websockets", "netdumplings.hub",
                                 "netdumplings.capture")) for m in loaded), loaded
