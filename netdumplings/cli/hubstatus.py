"""nd-hubstatus: a live one-screen view of a hub."""

from __future__ import annotations

import argparse
import sys

from ..eater import HubUnavailable
from ..wire import OUT_PORT
from .common import fail, parser, secret, setup_logging

PROG = "nd-hubstatus"


def main(argv: list[str] | None = None) -> int:
    p = parser(PROG, "Show a hub's status (uptime, dumpling totals and rates, kitchens, "
                     "eaters), refreshed at every status dumpling.")
    p.add_argument("--hub", default=f"127.0.0.1:{OUT_PORT}",
                   help="hub out-port address (default: %(default)s)")
    p.add_argument("--once", action="store_true", help="print one status and exit")
    p.add_argument("--reconnect", action=argparse.BooleanOptionalAction, default=True,
                   help="reconnect when the hub goes away (default: yes)")
    p.add_argument("--token-file", help="read the eater token from a file ($ND_EATER_TOKEN)")
    p.add_argument("--cafile", help="CA bundle to verify a wss:// hub")
    args = p.parse_args(argv)
    setup_logging(args)
    from netdumplings.eaters.hubstatus import HubStatusEater
    try:
        eater = HubStatusEater(once=args.once, name="nd-hubstatus", hub=args.hub,
                               reconnect=args.reconnect and not args.once, cafile=args.cafile,
                               token=secret(None, args.token_file, "ND_EATER_TOKEN"))
        eater.run()
    except (HubUnavailable, ValueError) as exc:
        fail(PROG, str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
