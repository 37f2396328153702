"""nd-dump: write packets forwarded by PacketForwardChef to pcap/pcapng files."""

from __future__ import annotations

import argparse
import sys

from ..eater.client import HubUnavailable
from ..wire.messages import OUT_PORT
from .common import (add_connection_args, check_writable, fail, hub_address, parser,
                     run_until_signal, secret, setup_logging)

PROG = "nd-dump"
EPILOG = """\
examples:
  nd-sniff -i eth0 -c PacketForwardChef --hub hub:11347      on the capturing host
  nd-dump -w all.pcap                                         every kitchen, merged
  nd-dump -w 'cap-%k.pcap'                                    one file per kitchen
  nd-dump -w - | wireshark -k -i -                            live into Wireshark
  nd-dump -w 'cap-%k-%Y%m%d-%H%M%S.pcapng' --pcapng -G 3600 -C 100

Timestamps, lengths and link types are the original capture's. -C MB starts a new file
once the current one holds MB million bytes (NAME, NAME1, NAME2 ...); -G SECONDS once a
file spans SECONDS of capture time, with strftime patterns in NAME expanded from its first
packet. A merged pcap file holds one link type: frames of another are skipped (counted);
pcapng has no such limit.

Short flags: as tcpdump -w, -c N, -C, -G; -k as nd-print (netdumplings 0.5).
The table of every command's flags: docs/cli/index.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, "Write packets forwarded through nd-hub (PacketForwardChef) to pcap or "
                     "pcapng files with their original timestamps.", EPILOG)
    p.add_argument("-w", "--write", required=True, metavar="FILE",
                   help="output file ('-' = stdout; '%%k' = the source kitchen's name)")
    p.add_argument("--hub", default=f"127.0.0.1:{OUT_PORT}",
                   help="hub out-port address host:port, ws:// or wss:// (default: %(default)s)")
    p.add_argument("-k", "--from-kitchen", action="append", metavar="NAME",
                   help="only packets from this kitchen (repeatable; default: all)")
    p.add_argument("--pcapng", action="store_true", help="write pcapng instead of pcap")
    p.add_argument("--nano", action="store_true",
                   help="nanosecond timestamps (default: microseconds, as tcpdump)")
    p.add_argument("-C", "--file-size", type=float, metavar="MB",
                   help="rotate when a file reaches MB million bytes")
    p.add_argument("-G", "--rotate-seconds", type=float, metavar="SECONDS",
                   help="rotate every SECONDS of capture time (strftime patterns in -w)")
    p.add_argument("-c", "--count", type=int, metavar="N", help="exit after N packets")
    p.add_argument("--eater-name", default="nd-dump", help="name shown by the hub")
    add_connection_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    if args.file_size is not None and args.file_size <= 0:
        fail(PROG, "-C must be positive", 2)
    if args.rotate_seconds is not None and args.rotate_seconds <= 0:
        fail(PROG, "-G must be positive", 2)
    if args.count is not None and args.count <= 0:
        fail(PROG, "--count must be positive", 2)
    hub_address(PROG, "--hub", args.hub, OUT_PORT)
    if args.write != "-":
        check_writable(PROG, args.write)
    from netdumplings.eaters.dump import DumpEater
    from netdumplings.capture.pcapwriter import Dumper

    try:
        dumper = Dumper(args.write, pcapng=args.pcapng, nano=args.nano,
                        rotate_bytes=int(args.file_size * 1_000_000) if args.file_size else None,
                        rotate_seconds=args.rotate_seconds, count=args.count)
    except ValueError as exc:
        fail(PROG, str(exc), 2)
    try:
        eater = DumpEater(dumper, from_kitchens=args.from_kitchen, name=args.eater_name,
                          hub=args.hub, reconnect=args.reconnect, cafile=args.cafile,
                          token=secret(args.token, args.token_file, "ND_EATER_TOKEN"))
    except ValueError as exc:
        fail(PROG, f"--hub: {exc}", 2)

    error = None
    try:
        run_until_signal(eater.eat, eater.stop)
    except HubUnavailable as exc:
        error = str(exc)
    except OSError as exc:  # cannot create an output file
        error = f"cannot write: {exc}"
    except KeyboardInterrupt:
        pass
    try:
        dumper.close()
    except BrokenPipeError:
        pass
    except OSError as exc:  # the last flush (disk full)
        error = error or f"cannot write: {exc}"
    if eater.write_error is not None and not error:
        exc = eater.write_error
        error = f"cannot write {exc.filename or args.write}: {exc.strerror or exc}"
    if not args.quiet and (not error or eater.write_error is not None):
        files = "stdout" if args.write == "-" else f"{len(dumper.files)} file(s)"
        t = eater.tracker
        print(f"{PROG}: {dumper.written} packets to {files}, {dumper.skipped_linktype} skipped "
              f"(link type), {t.missed_batches} batches ({t.missed_packets} packets) missed",
              file=sys.stderr)
    if error:
        fail(PROG, error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
