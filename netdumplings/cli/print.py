"""nd-print: print the dumplings a hub relays."""

from __future__ import annotations

import argparse
import sys

from ..eater.client import HubUnavailable
from ..wire.messages import OUT_PORT
from ..eater.hints import with_hint
from .common import (POSITIVE_INT, add_chef_or_count, add_color_flags, add_connection_args,
                     fail, hub_address, parser, secret, setup_logging)

PROG = "nd-print"
EPILOG = """\
examples:
  nd-print                                    everything from the hub on 127.0.0.1:11348
  nd-print --chef DNSLookupChef --no-interval-dumplings
  nd-print --json | jq .payload               one compact JSON dumpling per line
  nd-print --format '{timestamp:%H:%M:%S} {kitchen} {chef} {payload[summary]}'
Format fields: metadata, payload, chef, kitchen, driver, sequence, creation_time,
capture_time, timestamp (a datetime), src, dst, summary, json; missing ones print '-'.

Short flags: -c N as tcpdump's -c; as netdumplings 0.5 -c CHEF, -k, -n. -h is help: 0.5's
-h (the hub) is --hub. The table of every command's flags: docs/cli/index.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, "Print dumplings from nd-hub.", EPILOG)
    p.add_argument("--hub", default=f"127.0.0.1:{OUT_PORT}",
                   help="hub out-port address host:port, ws:// or wss:// (default: %(default)s; "
                        "0.5's -h is --help here)")
    p.add_argument("--chef", action="append", help="only this chef (repeatable)")
    add_chef_or_count(p, what="show")
    p.add_argument("-k", "--kitchen", action="append", help="only this kitchen (repeatable)")
    p.add_argument("-n", "--eater-name", default="nd-print",
                   help="name shown by the hub (default: %(default)s)")
    p.add_argument("--interval-dumplings", action=argparse.BooleanOptionalAction, default=True,
                   help="show interval dumplings (default: yes)")
    p.add_argument("--packet-dumplings", action=argparse.BooleanOptionalAction, default=True,
                   help="show packet dumplings (default: yes)")
    p.add_argument("--payload", action=argparse.BooleanOptionalAction, default=True,
                   help="show payloads, not just who/when (default: yes)")
    add_color_flags(p)
    p.add_argument("--hub-status", choices=("line", "full", "off"), default=None,
                   help="the hub's own status dumplings (one every few seconds): a one-line "
                        "summary (default), in full as any dumpling (default with --json and "
                        "--format), or not at all; nd-hubstatus shows them best")
    p.add_argument("--json", action="store_true", help="one compact JSON dumpling per line")
    p.add_argument("--format", metavar="FMT", help="Python format string over each dumpling")
    p.add_argument("--count", type=POSITIVE_INT, metavar="N",
                   help="exit after printing N dumplings")
    add_connection_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    from netdumplings.eaters.print import PrintEater, Printer, check_format

    hub_address(PROG, "--hub", args.hub, OUT_PORT)
    if args.format:
        try:
            check_format(args.format)
        except ValueError as exc:
            fail(PROG, f"--format: {exc}", 2)

    drivers = [d for d, on in (("packet", args.packet_dumplings),
                               ("interval", args.interval_dumplings)) if on]
    if not drivers:
        fail(PROG, "--no-packet-dumplings and --no-interval-dumplings leave nothing to print", 2)
    color = args.color if args.color is not None else sys.stdout.isatty()
    printer = Printer(mode="json" if args.json else "pretty", fmt=args.format,
                      payload=args.payload, color=color,
                      packet_dumplings=args.packet_dumplings,
                      interval_dumplings=args.interval_dumplings,
                      hub_status=args.hub_status or ("full" if args.json or args.format
                                                     else "line"))
    try:
        eater = PrintEater(printer, count=args.count, name=args.eater_name, hub=args.hub,
                           chef_filter=args.chef, kitchen_filter=args.kitchen,
                           driver_filter=drivers if len(drivers) == 1 else None,
                           reconnect=args.reconnect, cafile=args.cafile,
                           token=secret(args.token, args.token_file, "ND_EATER_TOKEN"))
    except ValueError as exc:
        fail(PROG, f"--hub: {exc}", 2)
    try:
        eater.run()
    except HubUnavailable as exc:
        fail(PROG, with_hint(PROG, str(exc), args.hub, exc))
    finally:
        if printer.format_errors:
            print(f"{PROG}: {printer.format_errors} dumplings not printed (--format failed)",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
