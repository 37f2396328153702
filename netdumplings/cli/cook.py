"""nd-cook: run chefs centrally over packets that kitchens forward with PacketForwardChef."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ..kitchen.chef import ChefLoadError
from ..eater.client import HubUnavailable
from ..wire.messages import IN_PORT, OUT_PORT, ws_uri
from .common import (NON_NEGATIVE, POSITIVE, POSITIVE_INT, add_chef_args, add_connection_args,
                     close_sender, fail, hub_address, parser, run_until_signal, secret,
                     setup_logging)
from .sniff import parse_chef_options, select_chefs

PROG = "nd-cook"
EPILOG = """\
examples:
  nd-sniff -i eth0 -c PacketForwardChef --hub hub:11347        on the busy host: forward only
  nd-cook --hub hub:11348 -m mychefs                            where the CPU is: cook
  nd-cook --hub hub:11348 -c Http1Chef --from-kitchen web1 --from-kitchen web2

Each source kitchen K gets its own flow table and chef instances; its dumplings are
published as kitchen "<kitchen-name>/K" to --publish (default: the --hub host's in-port
11347). A source's open flows are closed (reason "end") when the hub stops listing it.
Chef selection and --chef-option work as in nd-sniff. Tokens: $ND_EATER_TOKEN for the
hub's out-port, $ND_KITCHEN_TOKEN for publishing.

Short flags: as nd-sniff and netdumplings 0.5 -n, -m, -c CHEF, -o, -p; -k as nd-print.
The table of every command's flags: docs/cli/index.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, "Cook forwarded packets: an eater that runs kitchens (flows, reassembly, "
                     "chefs) over PacketForwardChef dumplings and publishes the results.",
               EPILOG)
    p.add_argument("--hub", default=f"127.0.0.1:{OUT_PORT}",
                   help="hub out-port to read forwarded packets from (default: %(default)s)")
    p.add_argument("--publish", metavar="HOST:IN_PORT",
                   help=f"hub in-port to publish to (default: the --hub host, port {IN_PORT})")
    p.add_argument("-n", "--kitchen-name", default="central",
                   help="kitchen name to publish under; each source kitchen K becomes "
                        "NAME/K (default: %(default)s)")
    p.add_argument("--single-name", action="store_true",
                   help="publish every source's dumplings as plain --kitchen-name")
    p.add_argument("-k", "--from-kitchen", action="append", metavar="NAME",
                   help="only packets from this kitchen (repeatable; default: all)")
    add_chef_args(p, count=False)
    p.add_argument("-p", "--poke-interval", type=NON_NEGATIVE, default=5.0, metavar="SECONDS",
                   help="poke interval handlers every SECONDS of capture time (0: only when a "
                        "source ends; default: %(default)s)")
    p.add_argument("--max-flows", type=POSITIVE_INT, default=100_000,
                   help="flow table size per source kitchen")
    p.add_argument("--flow-timeout", type=POSITIVE, default=300.0,
                   help="idle seconds (capture time) before a flow is closed")
    p.add_argument("--outbox-mb", type=POSITIVE, default=64.0,
                   help="dumplings held while the publish hub is unreachable, in MB")
    p.add_argument("--flush-timeout", type=NON_NEGATIVE, default=10.0,
                   help="on exit, wait up to SECONDS for the hub to take the last dumplings")
    p.add_argument("--eater-name", default="nd-cook", help="name shown by the hub")
    add_connection_args(p, reconnect=None)
    p.add_argument("--kitchen-token-file", help="read the publishing kitchen token from a file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    if args.verbose == 0 and not args.quiet:
        logging.getLogger("netdumplings.cook").setLevel(logging.INFO)
    try:
        available, names = select_chefs(args)
    except ChefLoadError as exc:
        fail(PROG, str(exc), 2)
    if "PacketForwardChef" in names:
        if args.chef:
            fail(PROG, "PacketForwardChef cannot run in nd-cook (it would forward the "
                       "forwarded packets again)", 2)
        names.remove("PacketForwardChef")
    if not names:
        fail(PROG, "no chefs to run", 2)
    try:
        chef_options = parse_chef_options(args.chef_option)
    except ValueError as exc:
        fail(PROG, str(exc), 2)
    for chef in chef_options:
        if chef not in names:
            fail(PROG, f"--chef-option for {chef}, which is not running", 2)
    hub_host, _, hub_tls = hub_address(PROG, "--hub", args.hub, OUT_PORT)
    if args.publish:
        pub_host, pub_port, pub_tls = hub_address(PROG, "--publish", args.publish, IN_PORT)
    else:
        pub_host, pub_port, pub_tls = hub_host, IN_PORT, hub_tls

    from netdumplings.eaters.cook import Cook, CookEater

    from ..wire.sender import HubSender

    hello = {"kitchen_name": args.kitchen_name, "interface": f"forwarded:{args.hub}",
             "filter": None, "chefs": names, "poke_interval": args.poke_interval}
    token = secret(None, args.kitchen_token_file, "ND_KITCHEN_TOKEN")
    if token:
        hello["token"] = token
    sender = HubSender(pub_host, pub_port, hello, tls=pub_tls, cafile=args.cafile,
                       outbox_bytes=int(args.outbox_mb * (1 << 20)))
    try:
        cook = Cook([available[n] for n in names], sink=lambda d, b: sender.put(b),
                    name=args.kitchen_name, chef_options=chef_options,
                    poke_interval=args.poke_interval, per_source_names=not args.single_name,
                    max_flows=args.max_flows, flow_idle_timeout=args.flow_timeout)
        # Build one kitchen up front so bad chef options fail now, not at the first packet.
        from ..kitchen.kitchen import Kitchen
        Kitchen("check", cook.chefs, chef_options=chef_options, poke_interval=None)
    except Exception as exc:  # pydantic ValidationError for bad chef options, mostly
        fail(PROG, f"cannot set up chefs: {exc}", 2)
    try:
        eater = CookEater(cook, from_kitchens=args.from_kitchen, name=args.eater_name,
                          hub=args.hub, reconnect=True, cafile=args.cafile,
                          token=secret(args.token, args.token_file, "ND_EATER_TOKEN"))
    except ValueError as exc:
        fail(PROG, f"--hub: {exc}", 2)
    sender.start()
    started = time.monotonic()

    error = None
    try:
        run_until_signal(eater.eat, eater.stop)
    except HubUnavailable as exc:
        error = str(exc)
    except KeyboardInterrupt:
        pass
    cook.finish_all()
    code = 0
    if not close_sender(PROG, sender, args.flush_timeout, ws_uri(pub_host, pub_port, pub_tls)):
        code = 1
    st = cook.stats()
    if not args.quiet:
        print(f"{PROG}: {st['packets']} packets in {st['batches']} batches from "
              f"{st['kitchens']} kitchens, {st['dumplings']} dumplings, "
              f"{st['missed_batches']} batches ({st['missed_packets']} packets) missed, "
              f"{st['duplicates']} duplicates, {sender.outbox.dropped_total} dropped "
              f"(outbox full) in {time.monotonic() - started:.2f}s", file=sys.stderr)
    if error:
        fail(PROG, error)
    return code


if __name__ == "__main__":
    sys.exit(main())
