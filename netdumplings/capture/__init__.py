"""Capture: packets in, from a live interface, a pcap/pcapng file or stdin.

Sources (live with PACKET_FANOUT, files, stdin), link types, BPF filters (live and
offline), the light ``Packet`` view the kitchen and chefs read, IP defragmentation,
tunnel decapsulation, pcap writing (``-w``) and the kernel's drop counters.

May import: the standard library, scapy and libpcap (ctypes); nothing else of
netdumplings. Everything downstream (flows, kitchen, cli) may import it.
"""

from .._lazy import lazy_exports

__all__ = ["CaptureError", "Dumper", "FilterError", "LiveSource", "NsPacket", "Packet",
           "PcapSource", "list_interfaces"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "CaptureError": ".errors", "LiveSource": ".live", "PcapSource": ".files",
    "list_interfaces": ".live", "FilterError": ".bpf", "Packet": ".packet",
    "NsPacket": ".packet", "Dumper": ".pcapwriter",
})
