"""nd-hubdetails: the kitchens and eaters connected to a hub, in detail."""

from __future__ import annotations

import argparse
import sys

from ..eater.client import HubUnavailable
from ..wire.messages import OUT_PORT
from ..eater.hints import with_hint
from .common import (add_color_flags, add_connection_args, fail, hub_address, parser, secret,
                     setup_logging)

PROG = "nd-hubdetails"
EPILOG = """\
Short flags: as netdumplings 0.5 -n (eater name). -h is help: 0.5's -h (the hub) is --hub.
The table of every command's flags: docs/cli/index.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, "Print every kitchen and eater connected to a hub, with what they told "
                     "the hub in their hellos (waits for the next status dumpling).", EPILOG)
    p.add_argument("--hub", default=f"127.0.0.1:{OUT_PORT}",
                   help="hub out-port address (default: %(default)s; 0.5's -h is --help here)")
    p.add_argument("-n", "--eater-name", default=PROG,
                   help="name shown by the hub (default: %(default)s)")
    p.add_argument("--follow", action="store_true", help="keep printing at every status")
    add_color_flags(p)
    add_connection_args(p, reconnect=None, token_arg=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    hub_address(PROG, "--hub", args.hub, OUT_PORT)
    from netdumplings.eaters.hubdetails import HubDetailsEater
    try:
        HubDetailsEater(follow=args.follow, name=args.eater_name, hub=args.hub,
                        reconnect=args.follow, cafile=args.cafile,
                        color=args.color if args.color is not None else sys.stdout.isatty(),
                        token=secret(None, args.token_file, "ND_EATER_TOKEN")).run()
    except (HubUnavailable, ValueError) as exc:
        fail(PROG, with_hint(PROG, str(exc), args.hub, exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
