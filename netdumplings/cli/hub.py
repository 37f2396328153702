"""nd-hub: relays dumplings from kitchens (in-port) to eaters (out-port)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from ..hub.server import Hub
from ..wire.messages import DEFAULT_HOST, IN_PORT, METRICS_PORT, OUT_PORT
from .common import (NON_NEGATIVE, PORT, POSITIVE, POSITIVE_INT, fail, parser, secret,
                     setup_logging)

log = logging.getLogger("netdumplings.hub")

PROG = "nd-hub"
EPILOG = f"""\
Kitchens (nd-sniff) connect to ws://ADDRESS:IN_PORT, eaters (nd-print, nd-hubstatus, the
web dashboard, your own) to ws://ADDRESS:OUT_PORT (wss:// with --certfile/--keyfile). The
wire protocol is JSON (or msgpack) over WebSockets, compatible with netdumplings 0.5 (see
docs/protocol.md). Every --status-freq seconds the hub sends a SystemStatusChef
dumpling to all eaters.

Tokens: with a kitchen (eater) token set, kitchens (eaters) must send it in their hello
("token") or as "Authorization: Bearer TOKEN"; otherwise they are closed with code 1008.
Prefer $ND_KITCHEN_TOKEN / $ND_EATER_TOKEN or the --*-token-file options: argv is visible
to every user of the machine.

Metrics: http://ADDRESS:{METRICS_PORT}/metrics (Prometheus) and /healthz by default;
--metrics-port 0 turns them off.

Short flags: as netdumplings 0.5 -a, -i, -o, -f (the hub reads no packets, so tcpdump's
letters have nothing to mean here: 0.5's scripts keep working). -h is help. The table of
every command's flags: docs/cli/index.md.
"""


def _port(text: str) -> int:
    """PORT, with a hint for an interface name given to -i as to nd-sniff."""
    if text and not text.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port: nd-hub's -i/-o are its ports (as in netdumplings 0.5); "
            "to listen on one interface's address use -a ADDRESS")
    return PORT(text)


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, "The netdumplings hub: takes dumplings from any number of kitchens and "
                     "sends them to any number of eaters.", EPILOG)
    p.add_argument("-a", "--address", default=DEFAULT_HOST,
                   help="address to bind (default: %(default)s: this host only; 0.0.0.0 or "
                        "an address for other hosts, with tokens and TLS, see the epilog)")
    p.add_argument("-i", "--in-port", type=_port, default=IN_PORT,
                   help="port for kitchens (default: %(default)s)")
    p.add_argument("-o", "--out-port", type=_port, default=OUT_PORT,
                   help="port for eaters (default: %(default)s)")
    p.add_argument("-f", "--status-freq", type=NON_NEGATIVE, default=5.0,
                   help="seconds between status dumplings; 0 = none, which leaves "
                        "nd-hubstatus and nd-hubdetails waiting (default: %(default)s)")
    p.add_argument("--max-queue", type=POSITIVE_INT, default=100_000,
                   help="dumplings queued per eater before its policy applies (default: "
                        "%(default)s; drop-oldest unless the eater asks to be disconnected)")
    p.add_argument("--max-queue-mb", type=POSITIVE, default=32.0,
                   help="bytes queued per eater, in MB, before its policy applies, whichever "
                        "of the two limits comes first (default: %(default)s)")
    p.add_argument("--max-message-mb", type=POSITIVE, default=16.0,
                   help="largest WebSocket message accepted, in MB; bigger ones close the "
                        "connection with 1009 (default: %(default)s)")
    p.add_argument("--max-dumpling-kb", type=POSITIVE, default=4096.0,
                   help="largest single dumpling, in KB; bigger ones are rejected and "
                        "counted, the kitchen stays connected (default: %(default)s)")
    p.add_argument("--flood-limit", type=POSITIVE_INT, default=1000,
                   help="invalid dumplings per 10 s after which a kitchen is closed "
                        "(default: %(default)s)")
    sec = p.add_argument_group("security")
    sec.add_argument("--kitchen-token", help="token kitchens must present "
                                             "(prefer $ND_KITCHEN_TOKEN)")
    sec.add_argument("--kitchen-token-file", help="read the kitchen token from a file")
    sec.add_argument("--eater-token", help="token eaters must present (prefer $ND_EATER_TOKEN)")
    sec.add_argument("--eater-token-file", help="read the eater token from a file")
    sec.add_argument("--certfile", help="TLS certificate (PEM, chain first): serve wss://")
    sec.add_argument("--keyfile", help="TLS private key (PEM) for --certfile")
    sec.add_argument("--max-kitchens", type=POSITIVE_INT, default=256,
                     help="open kitchen connections allowed (default: %(default)s)")
    sec.add_argument("--max-eaters", type=POSITIVE_INT, default=1024,
                     help="open eater connections allowed (default: %(default)s)")
    sec.add_argument("--max-unauthenticated", type=POSITIVE_INT, default=128, metavar="N",
                     help="connections per port that have not said hello yet; a new one "
                          "beyond N closes the oldest of them (4104). Nothing bigger than a "
                          "64 KB hello is read before a hello is accepted "
                          "(default: %(default)s)")
    sec.add_argument("--hello-timeout", type=POSITIVE, default=10.0,
                     help="seconds a new connection has to say hello (default: %(default)s)")
    sec.add_argument("--ping-interval", type=NON_NEGATIVE, default=20.0,
                     help="seconds between keepalive pings; a peer that does not answer "
                          "within as long again is closed; 0 = off (default: %(default)s)")
    p.add_argument("--startup-grace", type=NON_NEGATIVE, default=30.0, metavar="SECONDS",
                   help="for SECONDS after starting, keep what kitchens send (they resend "
                        "what a killed hub never acknowledged) and give it to every eater "
                        "that connects, so eaters coming back after a restart lose nothing; "
                        "what is still missed is counted and each returning eater told how "
                        "many; 0 = off (default: %(default)s)")
    p.add_argument("--startup-buffer-mb", type=NON_NEGATIVE, default=32.0, metavar="MB",
                   help="at most this much kept during --startup-grace; the oldest beyond it "
                        "is counted as missed (default: %(default)s)")
    p.add_argument("--max-memory-mb", type=POSITIVE, default=256.0, metavar="MB",
                   help="all eater queues together, in MB: when full, the eaters furthest "
                        "behind lose their oldest dumplings first (or are disconnected, by "
                        "their policy), so stalled eaters cannot grow the hub "
                        "(default: %(default)s)")
    p.add_argument("--write-timeout", type=NON_NEGATIVE, default=30.0, metavar="SECONDS",
                   help="an eater that takes nothing for SECONDS while the hub has data for "
                        "it is closed with code 4107 and its queue freed; 0 = never "
                        "(default: %(default)s)")
    bp = p.add_argument_group("several hubs (NATS backplane, docs/deployment-nats.md)")
    bp.add_argument("--backplane", metavar="NATS_URL",
                    help="share dumplings with the other hubs on this NATS server "
                         "(nats://host:4222; comma-separated for a cluster)")
    bp.add_argument("--hub-id", help="this hub's name on the backplane (default: random)")
    bp.add_argument("--replay", metavar="DURATION",
                    help="keep dumplings this long in a JetStream stream for eaters that ask "
                         "for a replay (e.g. 10m; default: no replay)")
    bp.add_argument("--replay-max", type=POSITIVE_INT, metavar="N",
                    help="at most N dumplings in the replay stream")
    p.add_argument("--metrics-port", type=PORT,
                   help=f"HTTP port for /metrics and /healthz; 0 = off (default: {METRICS_PORT}"
                        ", skipped with a warning if it is taken)")
    p.add_argument("--metrics-address", help="address for the metrics port (default: "
                                             "--address)")
    p.add_argument("--metrics-token", help="token /metrics requires as 'Authorization: "
                                           "Bearer TOKEN' (prefer $ND_METRICS_TOKEN); "
                                           "/healthz stays open for probes")
    p.add_argument("--metrics-token-file", help="read the metrics token from a file")
    return p


def _tune_gc() -> None:
    """Fewer garbage collections in a hub process. Its queues and startup buffer are deques
    of up to a few hundred thousand entries, and every full collection walks each of them;
    with CPython's default thresholds (a young collection every 700 new containers, about
    every 70 dumplings with ten eaters) full ones came often enough to cost ~4 us a dumpling
    with ten plain eaters (a third of the hub's time; see docs/performance.md). The hub
    makes few reference cycles, and its memory is bounded by its own budgets, not by the
    collector. What exists once the hub is set up (modules, models) is frozen: no
    collection walks it again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    if args.verbose == 0 and not args.quiet:
        for name in ("netdumplings.hub", "netdumplings.backplane"):
            logging.getLogger(name).setLevel(logging.INFO)
    if bool(args.certfile) != bool(args.keyfile) and not args.certfile:
        fail(PROG, "--keyfile needs --certfile", 2)
    try:
        kitchen_token = secret(args.kitchen_token, args.kitchen_token_file, "ND_KITCHEN_TOKEN")
        eater_token = secret(args.eater_token, args.eater_token_file, "ND_EATER_TOKEN")
        metrics_token = secret(args.metrics_token, args.metrics_token_file, "ND_METRICS_TOKEN")
    except OSError as exc:
        fail(PROG, f"cannot read token file: {exc}", 2)
    ping = args.ping_interval or None
    backplane = None
    if args.backplane:
        from ..hub.backplane import NatsBackplane
        from ..hub.subjects import REPLAY_MAX_MSGS, parse_duration
        try:
            import nats  # noqa: F401  (checked here: a hub that cannot join must say so now)
        except ImportError:
            fail(PROG, "--backplane needs nats-py: pip install 'netdumplings[nats]'", 2)
        try:
            replay = parse_duration(args.replay) if args.replay else None
        except ValueError as exc:
            fail(PROG, f"--replay: {exc}", 2)
        backplane = NatsBackplane(args.backplane, hub_id=args.hub_id, replay=replay,
                                  replay_max_msgs=args.replay_max or REPLAY_MAX_MSGS)
    elif args.replay or args.hub_id:
        fail(PROG, "--replay and --hub-id need --backplane", 2)
    try:
        hub = Hub(args.address, args.in_port, args.out_port, args.status_freq,
                  max_queue=args.max_queue,
                  max_queue_bytes=int(args.max_queue_mb * (1 << 20)),
                  max_message_size=int(args.max_message_mb * (1 << 20)),
                  max_dumpling_size=int(args.max_dumpling_kb * 1024),
                  hello_timeout=args.hello_timeout, kitchen_token=kitchen_token,
                  eater_token=eater_token, certfile=args.certfile, keyfile=args.keyfile,
                  max_kitchens=args.max_kitchens, max_eaters=args.max_eaters,
                  ping_interval=ping, ping_timeout=ping, flood_limit=args.flood_limit,
                  metrics_port=METRICS_PORT if args.metrics_port is None else
                  args.metrics_port or None, metrics_address=args.metrics_address,
                  metrics_optional=args.metrics_port is None, metrics_token=metrics_token,
                  startup_grace=args.startup_grace,
                  startup_buffer=int(args.startup_buffer_mb * (1 << 20)),
                  max_memory=int(args.max_memory_mb * (1 << 20)),
                  write_timeout=args.write_timeout or None,
                  max_unauthenticated=args.max_unauthenticated, backplane=backplane)
    except (OSError, ValueError) as exc:  # unreadable/mismatched certificate or key
        fail(PROG, f"cannot load TLS certificate: {exc}", 2)
    _raise_open_files_limit(2 * (args.max_kitchens + args.max_eaters) + 64)
    _tune_gc()
    try:
        asyncio.run(_serve_until_signal(hub))
    except OSError as exc:
        fail(PROG, f"cannot listen on {args.address} ports {args.in_port}/{args.out_port}"
                   f"{'/' + str(args.metrics_port) if args.metrics_port else ''}: "
                   f"{exc.strerror or exc}")
    except KeyboardInterrupt:
        pass
    return 0


def _raise_open_files_limit(need: int) -> None:
    """Every connection is a file descriptor, and the limits allow up to ``need`` of them
    (kitchens and eaters with a hello, as many again still saying it, some spare): raise the
    soft limit towards that (1024 is a common default), and say so if the hard one is lower."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft < need:
        log.warning("open files limit is %d, below the %d that --max-kitchens and --max-eaters "
                    "allow: connections beyond it will fail (raise 'ulimit -n' or lower them)",
                    soft, need)


async def _serve_until_signal(hub: Hub) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly: connections are closed with 1001
    (going away), so eaters and kitchens reconnect quietly (``docker stop``, systemd)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await hub.start()
    try:
        await stop.wait()
    finally:
        await hub.stop()
    log.info("hub stopped")


if __name__ == "__main__":
    sys.exit(main())
