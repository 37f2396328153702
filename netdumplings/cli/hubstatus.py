"""nd-hubstatus: a live one-screen view of a hub."""

from __future__ import annotations

import sys

from ..eater import HubUnavailable
from ..wire import OUT_PORT
from .common import add_connection_args, fail, hub_address, parser, secret, setup_logging

PROG = "nd-hubstatus"


def main(argv: list[str] | None = None) -> int:
    p = parser(PROG, "Show a hub's status (uptime, dumpling totals and rates, kitchens, "
                     "eaters), refreshed at every status dumpling.")
    p.add_argument("--hub", default=f"127.0.0.1:{OUT_PORT}",
                   help="hub out-port address (default: %(default)s)")
    p.add_argument("--once", action="store_true", help="print one status and exit")
    add_connection_args(p, token_arg=False)
    args = p.parse_args(argv)
    setup_logging(args)
    hub_address(PROG, "--hub", args.hub, OUT_PORT)
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
