"""nd-hub: relays dumplings from kitchens (in-port) to eaters (out-port)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from ..hub import Hub
from ..wire import DEFAULT_HOST, IN_PORT, OUT_PORT
from .common import fail, parser, setup_logging

PROG = "nd-hub"
EPILOG = """\
Kitchens (nd-sniff) connect to ws://ADDRESS:IN_PORT, eaters (nd-print, nd-hubstatus, the
web dashboard, your own) to ws://ADDRESS:OUT_PORT. The wire protocol is JSON over
WebSockets, compatible with netdumplings 0.5 (see docs/wire-protocol.md).
Every --status-freq seconds the hub sends a SystemStatusChef dumpling to all eaters.
"""


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, "The netdumplings hub: takes dumplings from any number of kitchens and "
                     "sends them to any number of eaters.", EPILOG)
    p.add_argument("-a", "--address", default=DEFAULT_HOST,
                   help="address to bind (default: %(default)s; 0.0.0.0 to expose)")
    p.add_argument("-i", "--in-port", type=int, default=IN_PORT,
                   help="port for kitchens (default: %(default)s)")
    p.add_argument("-o", "--out-port", type=int, default=OUT_PORT,
                   help="port for eaters (default: %(default)s)")
    p.add_argument("-f", "--status-freq", type=float, default=5.0,
                   help="seconds between status dumplings (default: %(default)s)")
    p.add_argument("--max-queue", type=int, default=10_000,
                   help="dumplings queued per eater before its policy applies (default: "
                        "%(default)s; drop-oldest unless the eater asks to be disconnected)")
    p.add_argument("--max-message-mb", type=float, default=16.0,
                   help="largest message accepted, in MB (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    if args.verbose == 0 and not args.quiet:
        logging.getLogger("netdumplings.hub").setLevel(logging.INFO)
    hub = Hub(args.address, args.in_port, args.out_port, args.status_freq,
              max_queue=args.max_queue, max_message_size=int(args.max_message_mb * (1 << 20)))
    try:
        asyncio.run(hub.serve_forever())
    except OSError as exc:
        fail(PROG, f"cannot listen on {args.address} ports {args.in_port}/{args.out_port}: "
                   f"{exc.strerror or exc}")
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
