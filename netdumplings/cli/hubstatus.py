"""nd-hubstatus: a live one-screen view of a hub."""

from __future__ import annotations

import argparse
import sys

from ..eater.client import HubUnavailable
from ..wire.messages import OUT_PORT
from ..eater.hints import with_hint
from .common import (add_color_flags, add_connection_args, fail, hub_address, parser, secret,
                     setup_logging)

PROG = "nd-hubstatus"
EPILOG = """\
Short flags: as netdumplings 0.5 -n (eater name). -h is help: 0.5's -h (the hub) is --hub.
The table of every command's flags: docs/cli/index.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, "Show a hub's status (uptime, dumpling totals and rates, kitchens, "
                     "eaters), refreshed at every status dumpling.", EPILOG)
    p.add_argument("--hub", default=f"127.0.0.1:{OUT_PORT}",
                   help="hub out-port address (default: %(default)s; 0.5's -h is --help here)")
    p.add_argument("-n", "--eater-name", default=PROG,
                   help="name shown by the hub (default: %(default)s)")
    p.add_argument("--once", action="store_true", help="print one status and exit")
    add_color_flags(p)
    add_connection_args(p, token_arg=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    hub_address(PROG, "--hub", args.hub, OUT_PORT)
    from netdumplings.eaters.hubstatus import HubStatusEater
    try:
        eater = HubStatusEater(once=args.once, name=args.eater_name, hub=args.hub,
                               reconnect=args.reconnect and not args.once, cafile=args.cafile,
                               color=args.color if args.color is not None
                               else sys.stdout.isatty(),
                               token=secret(None, args.token_file, "ND_EATER_TOKEN"))
        eater.run()
    except (HubUnavailable, ValueError) as exc:
        fail(PROG, with_hint(PROG, str(exc), args.hub, exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
