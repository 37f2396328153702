"""Where packets come from: pcap/pcapng files, a pcap stream on stdin, live interfaces.

Every source yields ``Packet`` objects and raises ``CaptureError`` with a message for the
user. This module names them in one place; each lives in its own module: ``files``
(pcap/pcapng, stdin), ``live`` (AF_PACKET sockets), ``socketfilter`` (the kernel BPF
filter of a live socket).
"""

from .errors import CaptureError
from .files import MAX_BLOCK, MAX_RECORD, PcapSource
from .live import LiveSource, drain, list_interfaces
from .socketfilter import attach_filter, build_program, compile_bpf

__all__ = ["CaptureError", "LiveSource", "MAX_BLOCK", "MAX_RECORD", "PcapSource",
           "attach_filter", "build_program", "compile_bpf", "drain", "list_interfaces"]
