"""nd-hubdetails: the kitchens and eaters connected to a hub, in detail."""

from __future__ import annotations

import sys

from ..eater import HubUnavailable
from ..wire import OUT_PORT
from .common import add_connection_args, fail, hub_address, parser, secret, setup_logging

PROG = "nd-hubdetails"


def main(argv: list[str] | None = None) -> int:
    p = parser(PROG, "Print every kitchen and eater connected to a hub, with what they told "
                     "the hub in their hellos (waits for the next status dumpling).")
    p.add_argument("--hub", default=f"127.0.0.1:{OUT_PORT}",
                   help="hub out-port address (default: %(default)s)")
    p.add_argument("--follow", action="store_true", help="keep printing at every status")
    add_connection_args(p, reconnect=None, token_arg=False)
    args = p.parse_args(argv)
    setup_logging(args)
    hub_address(PROG, "--hub", args.hub, OUT_PORT)
    from netdumplings.eaters.hubdetails import HubDetailsEater
    try:
        HubDetailsEater(follow=args.follow, name="nd-hubdetails", hub=args.hub,
                        reconnect=args.follow, cafile=args.cafile,
                        token=secret(None, args.token_file, "ND_EATER_TOKEN")).run()
    except (HubUnavailable, ValueError) as exc:
        fail(PROG, str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
