"""nd-sniff: a kitchen. Captures packets and sends the chefs' dumplings to a hub."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Any

from ..kitchen.chef import ChefLoadError
from ..wire.dumpling import encode
from ..capture.ifdrops import InterfaceDrops
from ..kitchen.kitchen import Kitchen
from ..capture.pcapwriter import Dumper
from ..kitchen.registry import load_chefs
from ..capture.sources import CaptureError, LiveSource, PcapSource
from ..wire.messages import IN_PORT
from .listings import chef_list, list_interfaces
from .packetpath import Tee, packets_for, progress_line
from .portcheck import blind_chefs, idle_chefs
from .common import (NON_NEGATIVE, POSITIVE, POSITIVE_INT, add_chef_args, add_connection_args,
                     check_writable, close_sender, exit_on_second_interrupt, fail,
                     hub_address, number, parser, secret, setup_logging)

PROG = "nd-sniff"
SNAPLEN = 262144
EPILOG = """\
examples:
  nd-sniff -i lo tcp port 24224 -c FluentdForwardChef               live, to the hub on 127.0.0.1:11347
  nd-sniff -i eth0 -i eth1 -m mychefs.py --hub hub.example:11347    several interfaces, your chefs
  nd-sniff -r capture.pcap --print                                  a file, dumplings on stdout
  nd-sniff -i eth0 -w dns.pcapng port 53                            cook, and keep the packets
  nd-sniff -i eth0 -c 100 --print arp                               stop after 100 packets
  tcpdump -U -w - -i eth0 | nd-sniff -r - -m mychefs               a pcap stream on stdin
  nd-sniff -r ca.pcap -c ChannelAccessChef --print --format '{timestamp} {src}->{dst} {payload[command]}'
  nd-sniff -l                                                       list the chefs available
  nd-sniff -D                                                       list the interfaces

Chefs: with no --chef, every chef of the --chef-module modules runs; with neither, the
bundled chefs run (except opt-in ones such as TcpConnChef). Options for a chef:
-o FluentdForwardChef.ports=24224,24225 (repeatable). A chef you named whose ports the
filter never passes is named at start, with the -o that fits, and at exit if it followed
no flow (the bundled chefs with -v).
Live capture needs root or CAP_NET_RAW (docs: quickstart). Tokens: $ND_KITCHEN_TOKEN or
--token-file. With -v the summary at exit also says how long each chef took (the time it
spent in its handlers): which chef to leave out when a live capture cannot keep up.
Exit status: 0; 1 if the capture failed, dumplings were not delivered or a chef raised on
everything it was given; 2 for a usage error.

Short flags: as tcpdump -i -r -w -s -D -F, -c N and the filter expression; as netdumplings
0.5 -n (kitchen name), -f (filter), -p (poke interval), -m, -l, -c CHEF. -h is help: 0.5's
-h (the hub) is --hub. The table of every command's flags: docs/cli/index.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, "A netdumplings kitchen: sniff packets (live, from a file, or from stdin),"
                     " run chefs over them, and send their dumplings to nd-hub.", EPILOG)
    p.add_argument("-n", "--kitchen-name", default="default", help="name of this kitchen, "
                   "shown by the hub and in its dumplings (default: %(default)s)")
    p.add_argument("--hub", default=f"127.0.0.1:{IN_PORT}",
                   help="hub in-port address host:port, ws:// or wss:// (default: %(default)s; "
                        "0.5's -h is --help here)")
    p.add_argument("-i", "--interface", action="append", metavar="IFACE",
                   help="interface to sniff (repeatable; default: all; 'all' or 'any' = all)")
    p.tcpdump_habits = {  # type: ignore[attr-defined]
        "-n": "-n takes the kitchen's name here (netdumplings 0.5's -n); tcpdump's -n (no "
              "name resolution) is not needed: nd-sniff resolves no names",
        "-p": "-p takes the poke interval in seconds here (netdumplings 0.5's -p); tcpdump's "
              "-p (no promiscuous mode) is not needed: nd-sniff never turns it on",
    }
    p.add_argument("expression", nargs="*", metavar="EXPRESSION",
                   help="capture filter, as tcpdump's expression (e.g. tcp port 80); same as "
                        "-f")
    p.add_argument("-f", "--filter", default=None, metavar="BPF",
                   help="capture filter in one argument (netdumplings 0.5's -f; default: "
                        "every packet)")
    p.add_argument("-F", "--filter-file", metavar="FILE",
                   help="read the capture filter from FILE (as tcpdump -F; '#' comments)")
    p.add_argument("-r", "--read", metavar="FILE",
                   help="read a pcap/pcapng file instead of sniffing ('-' = stdin)")
    p.add_argument("--count", type=POSITIVE_INT, metavar="N",
                   help="stop after N packets (-c N, as tcpdump); the chefs then finish as at "
                        "the end of a file")
    add_chef_args(p)
    p.add_argument("--workers", type=_workers, default=1, metavar="N",
                   help="kitchen processes, flows shared between them (default: %(default)s; "
                        "'auto': one per core left after the reader). A file or stdin is "
                        "read and split by flow here; a live capture is split by the kernel "
                        "(PACKET_FANOUT). Still one kitchen to the hub, with merged totals. "
                        "Live, --count stops the workers together just after N packets "
                        "(the summary says how many were cooked)")
    p.add_argument("-l", "--chef-list", action="store_true",
                   help="list the available chefs and exit")
    p.add_argument("-D", "--list-interfaces", action="store_true",
                   help="list the interfaces -i can sniff, with their state and addresses, "
                        "and exit (as tcpdump -D)")
    p.add_argument("-p", "--poke-interval", type=NON_NEGATIVE, default=5.0, metavar="SECONDS",
                   help="call chefs' interval handlers every SECONDS (0: only at the end; "
                        "default: %(default)s). 0.5's -p: tcpdump's -p (no promiscuous "
                        "mode) has nothing to turn off, nd-sniff never turns it on")
    p.add_argument("-w", "--write", metavar="FILE",
                   help="also write the packets read to FILE, as tcpdump -w (pcapng if FILE "
                        "ends in .pcapng, else pcap; '-' = stdout, not with --print); the "
                        "chefs still run")
    p.add_argument("--nano", action="store_true",
                   help="with -w: nanosecond timestamps (default: microseconds, as tcpdump)")
    p.add_argument("--print", action="store_true",
                   help="no hub: print dumplings to stdout (JSON lines, or --format)")
    p.add_argument("--format", metavar="FMT",
                   help="with --print: Python format string over a dumpling, e.g. "
                        "'{timestamp} {chef} {payload[summary]}'")
    p.add_argument("-s", "--snaplen", type=number(int, low=0), default=SNAPLEN,
                   help="live capture: bytes kept per packet (0 = %(default)s, as tcpdump; "
                        "default: %(default)s)")
    p.add_argument("--outbox-mb", type=POSITIVE, default=64.0,
                   help="dumplings held while the hub is unreachable or slower than the "
                        "kitchen, in MB (default: %(default)s). Live and stdin: beyond it the "
                        "oldest are dropped, counted and reported, since capture cannot wait. "
                        "A file (-r FILE): reading waits for room instead, so nothing is "
                        "dropped")
    p.add_argument("--linger-ms", type=NON_NEGATIVE, default=1.0,
                   help="while dumplings keep coming, send at most one message to the hub "
                        "per this many ms, so a steady flow shares messages instead of one "
                        "each (the hub's work per eater falls with it); the first after a "
                        "pause goes at once; 0 sends at once always (default: %(default)s)")
    p.add_argument("--flush-timeout", type=NON_NEGATIVE, default=30.0,
                   help="at the end of a file, wait up to SECONDS for the hub to take the "
                        "last dumplings (default: %(default)s)")
    p.add_argument("--no-tunnels", action="store_true",
                   help="flow chefs see VXLAN (UDP 4789/8472), Geneve (UDP 6081) and GRE "
                        "packets as they are, instead of the packets inside them (default: "
                        "look inside, as Wireshark does)")
    p.add_argument("--max-flows", type=POSITIVE_INT, default=100_000,
                   help="flow table size; the least recently active flow is evicted beyond it "
                        "(default: %(default)s)")
    p.add_argument("--flow-timeout", type=POSITIVE, default=300.0,
                   help="idle seconds (capture time) before a flow is closed (default: "
                        "%(default)s)")
    p.add_argument("--encoding", choices=("json", "msgpack"), default="json",
                   help="kitchen -> hub frames: JSON text (default, netdumplings 0.5 "
                        "compatible) or msgpack binary (if the hub accepts it; else JSON)")
    add_connection_args(p, role="kitchen", reconnect=None)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress on stderr while reading a file (default: when a terminal)")
    return p


def _workers(value: str) -> int:
    if value == "auto":
        from ..kitchen.workers import auto_workers
        return auto_workers()
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or 'auto', "
                                         f"not {value!r}") from None
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"workers must be 1 to 256, not {n}")
    return n


def parse_chef_options(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        chef, dot, key = name.partition(".")
        if not sep or not dot or not chef or not key:
            raise ValueError(f"bad --chef-option {item!r} (expected CHEF.KEY=VALUE)")
        out.setdefault(chef, {})[key] = value
    return out


def select_chefs(args: argparse.Namespace) -> tuple[dict[str, type], list[str]]:
    available = load_chefs(args.chef_module)
    if args.chef:
        names = list(dict.fromkeys(args.chef))
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ChefLoadError(f"unknown chef(s): {', '.join(unknown)} "
                                f"(available: {', '.join(available)})")
    elif args.chef_module:
        from ..kitchen.chef import chefs_in_module
        names = []
        for spec in args.chef_module:
            names.extend(n for n in chefs_in_module(spec) if n not in names)
    else:
        names = [n for n, cls in available.items() if not getattr(cls, "opt_in", False)]
    return available, names


def capture_filter(args: argparse.Namespace) -> str | None:
    """One filter from -f, -F or the tcpdump-style expression words (only one of them)."""
    given = [how for how, on in (("-f", args.filter), ("-F", args.filter_file),
                                 ("an expression", args.expression)) if on]
    if len(given) > 1:
        fail(PROG, f"the filter is given twice ({' and '.join(given)}): give one", 2)
    if args.filter_file:
        try:
            with open(args.filter_file, encoding="utf-8") as fh:
                text = " ".join(line.partition("#")[0].strip() for line in fh)
        except (OSError, UnicodeDecodeError) as exc:
            fail(PROG, f"-F {args.filter_file}: {getattr(exc, 'strerror', None) or exc}", 2)
        return " ".join(text.split()) or None
    if args.expression:
        return " ".join(args.expression)
    return args.filter


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    setup_logging(args)
    log = logging.getLogger("netdumplings.sniff")
    args.filter = capture_filter(args)
    if args.list_interfaces:
        for line in list_interfaces():
            print(line)
        return 0
    try:
        available, names = select_chefs(args)
    except ChefLoadError as exc:
        fail(PROG, str(exc), 2)
    if args.chef_list:
        print(chef_list(available, args.chef_module))
        return 0
    try:
        chef_options = parse_chef_options(args.chef_option)
    except ValueError as exc:
        fail(PROG, str(exc), 2)
    for chef in chef_options:
        if chef not in names:
            fail(PROG, f"--chef-option for {chef}, which is not running", 2)
    interfaces = [i for i in (args.interface or []) if i not in ("all", "any")] or None
    if args.format:
        from netdumplings.eaters.print import check_format
        try:
            check_format(args.format)
        except ValueError as exc:
            fail(PROG, f"--format: {exc}", 2)

    dumper = None
    if args.write:
        if args.write == "-" and args.print:
            fail(PROG, "-w - and --print would both write to stdout", 2)
        if args.write != "-":
            check_writable(PROG, args.write)
        dumper = Dumper(args.write, pcapng=args.write.endswith(".pcapng"), nano=args.nano)
    elif args.nano:
        fail(PROG, "--nano is for -w", 2)

    stop = threading.Event()

    def keep_waiting() -> bool:
        return not stop.is_set()

    # Sink: stdout or the hub.
    sender = None
    printer = None
    if args.print:
        from netdumplings.eaters.print import Printer
        printer = Printer(mode="json", fmt=args.format, prog=PROG)

        def sink(dumpling: dict, data: bytes) -> None:
            printer.print(dumpling, data)
    else:
        from ..wire.sender import HubSender
        host, port, tls = hub_address(PROG, "--hub", args.hub, IN_PORT)
        hello = {"kitchen_name": args.kitchen_name,
                 "interface": args.read and f"file:{args.read}" or ",".join(interfaces or ["all"]),
                 "filter": args.filter, "chefs": names, "poke_interval": args.poke_interval}
        token = secret(args.token, args.token_file, "ND_KITCHEN_TOKEN")
        if token:
            hello["token"] = token
        sender = HubSender(host, port, hello, tls=tls, cafile=args.cafile,
                           outbox_bytes=int(args.outbox_mb * (1 << 20)),
                           encoding=args.encoding, linger=max(0.0, args.linger_ms) / 1000)
        if args.read and args.read != "-":
            # A file can be read more slowly: wait for the hub rather than drop.
            def sink(dumpling: dict, data: bytes) -> None:
                sender.put(data, wait=keep_waiting)
        else:
            sink = lambda dumpling, data: sender.put(data)  # noqa: E731

    try:
        kitchen_args = dict(poke_interval=args.poke_interval, interface=args.interface and
                            ",".join(args.interface), bpf_filter=args.filter,
                            chef_options=chef_options, max_flows=args.max_flows,
                            flow_idle_timeout=args.flow_timeout, time_chefs=args.verbose > 0,
                            decapsulate=not args.no_tunnels)
        classes = [available[n] for n in names]
        if args.workers > 1:
            from ..kitchen.workers import ShardedKitchen
            kitchen: Any = ShardedKitchen(args.workers, args.kitchen_name, classes, sink=sink,
                                          wants_dict=printer is not None and printer.mode != "json",
                                          **kitchen_args)
        else:
            kitchen = Kitchen(args.kitchen_name, classes, sink=sink, **kitchen_args)
    except Exception as exc:  # pydantic ValidationError for bad chef options, mostly
        fail(PROG, f"cannot set up chefs: {exc}", 2)
    # The chefs the user picked (-c, -m) are named when the filter leaves them blind; of
    # the bundled set, each for its own protocol, only with -v (a filter for DNS rightly
    # leaves the Fluentd chef nothing).
    chosen = bool(args.chef or args.chef_module) or args.verbose > 0
    if not args.quiet and chosen:
        for line in blind_chefs(args.filter, kitchen.chefs):
            print(f"{PROG}: warning: {line}", file=sys.stderr)

    if sender is not None:
        kitchen.sender = sender  # chefs may report the outbox's drop count (PacketForwardChef)

        def notice(dropped: int) -> bytes:
            # Sequence numbers already show the gap to eaters; this says why.
            return encode({"metadata": {"chef": "KitchenNoticeChef", "kitchen": kitchen.name,
                                        "creation_time": time.time(), "driver": "interval",
                                        "host": kitchen.host},
                           "payload": {"notice": "outbox_overflow", "dropped": dropped,
                                       "dropped_total": sender.outbox.dropped_total}})
        sender.notice_hook = notice
        if args.read and args.workers > 1:
            kitchen.start()  # fork the workers before the sender's thread starts
        if args.read:
            sender.start()  # a file: connect while it is being read

    tee = Tee(dumper, args.write) if dumper is not None else None
    signal.signal(signal.SIGTERM, lambda *a: stop.set())

    def stopping() -> bool:
        # A hub that refused this kitchen for good (wrong token, invalid hello) will refuse
        # it again: cooking on for nobody would only fill the outbox.
        return stop.is_set() or (sender is not None and sender.refused is not None)
    started = time.monotonic()
    error: str | None = None
    source: Any = None
    interrupted = False
    # live: what the kernel dropped before any socket saw it (tcpdump's "by interface")
    ifdrops = None if args.read else InterfaceDrops(interfaces)
    try:
        if args.read:
            source = PcapSource(args.read, bpf_filter=args.filter)
            if args.workers > 1:
                kitchen.streaming = source.size is None   # stdin, a pipe: may pause
            progress = None
            show = args.progress if args.progress is not None else sys.stderr.isatty()
            if show and source.size:
                progress = progress_line(source, kitchen, started)
            kitchen.run(packets_for(source, tee, args.count), stop=stopping,
                        progress=progress)
            if progress:
                sys.stderr.write("\r\x1b[K")
        elif args.workers > 1:
            from ..capture.fanout import FanoutCapture
            capture = FanoutCapture(interfaces, args.filter, args.snaplen or SNAPLEN,
                                    count=args.count)
            kitchen.start_live(capture)   # CaptureError: nothing captured
            source = capture
            log.info("sniffing %s filter=%r chefs=%s with %d workers",
                     ",".join(interfaces or ["all"]), args.filter, ",".join(names),
                     args.workers)
            if tee is not None or kitchen.reader.chefs:
                # -w and the chefs that must see every packet: one more capture, here
                ticks = capture.own = LiveSource(interfaces, args.filter,
                                                 snaplen=args.snaplen or SNAPLEN)
            else:
                ticks = capture
            if sender is not None:
                sender.start()
            kitchen.run(packets_for(ticks, tee, None), stop=stop.is_set, live=True)
        else:
            source = LiveSource(interfaces, args.filter, snaplen=args.snaplen or SNAPLEN)
            log.info("sniffing %s filter=%r chefs=%s", ",".join(interfaces or ["all"]),
                     args.filter, ",".join(names))
            if sender is not None:
                sender.start()  # only now: the hub sees the kitchen once it is capturing
            kitchen.run(packets_for(source, tee, args.count), stop=stopping, live=True)
    except CaptureError as exc:
        error = str(exc)
    except KeyboardInterrupt:
        interrupted = True
        exit_on_second_interrupt(PROG, lambda: len(sender.outbox) if sender else 0)
    finally:
        if source is not None:
            source.close()
    code = 0
    if error and source is None:
        # Could not start at all (bad interface, filter, permissions, unreadable file): no
        # capture, so no end-of-capture dumplings either (they would be empty statistics).
        if sender is not None and args.read:
            sender.close(timeout=0.5)
        fail(PROG, error)
    try:
        kitchen.finish()
    except KeyboardInterrupt:  # Ctrl-C while the chefs finish: what they made so far goes
        interrupted = True
        exit_on_second_interrupt(PROG, lambda: len(sender.outbox) if sender else 0)
    for died in getattr(kitchen, "died", ()):
        print(f"{PROG}: error: {died}", file=sys.stderr)
        error = error or "a worker died: its flows' dumplings may be missing"
    refused = sender is not None and sender.refused is not None
    if refused:
        print(f"{PROG}: error: {sender.refused}; capture stopped", file=sys.stderr)
        code = 1
    elif sender is not None and not close_sender(PROG, sender, args.flush_timeout, args.hub,
                                                 interrupted=interrupted or stop.is_set()):
        code = 1
    if refused:
        sender.close(timeout=0, join=0.2)
    elapsed = time.monotonic() - started
    st = kitchen.stats
    live = ""
    lost = False   # anything dropped or left undecoded: said even with -q
    kernel_drops = 0
    if isinstance(source, LiveSource) or getattr(source, "fanout", False):
        live_stats = source.stats()
        kernel_drops = live_stats["kernel_drops"]
        live = f", {kernel_drops} dropped by the kernel"
        if "per_worker" in live_stats:
            live += f" ({' + '.join(str(n) for n in live_stats['per_worker'])} by worker)"
            if live_stats.get("reader_drops"):
                live += f", {live_stats['reader_drops']} by the reader's own capture"
        lost = kernel_drops > 0 or bool(live_stats.get("reader_drops"))
        if ifdrops is not None:
            before = ifdrops.since()
            live += f", {before['interface_drops']} dropped by interface"
            if before["backlog_drops"]:
                live += (f" ({before['backlog_drops']} in this host's receive backlog, all "
                         f"interfaces)")
            lost = lost or before["interface_drops"] > 0
    dropped = f", {sender.outbox.dropped_total} dropped (outbox full)" if sender and \
        sender.outbox.dropped_total else ""
    lost = lost or bool(dropped)
    if st.truncated_datagrams:
        dropped += f", {st.truncated_datagrams} datagrams cut by the snaplen not decoded"
        lost = True
    if st.fragmented_datagrams_dropped:
        dropped += (f", {st.fragmented_datagrams_dropped} fragmented datagrams not "
                    f"reassembled (fragments missing or inconsistent)")
        lost = True
    if printer is not None and printer.format_errors:
        dropped += f", {printer.format_errors} not printed (--format failed)"
    if tee is not None:
        tee.close()
        dropped += f", {tee.written} written to {'stdout' if args.write == '-' else args.write}"
        if tee.error:
            error = error or tee.error
        elif tee.skipped:
            dropped += f" ({tee.skipped} of other link types not written: use .pcapng)"
    if not args.quiet or lost:
        by_chef = kitchen.chef_errors
        which = f" ({', '.join(f'{c} {n}' for c, n in by_chef.items())})" if by_chef else ""
        print(f"{PROG}: {st.packets} packets, {st.dumplings} dumplings, {st.chef_errors} chef "
              f"errors{which}{dropped}{live} in {elapsed:.2f}s "
              f"({st.packets / elapsed if elapsed > 0 else 0:.0f} packets/s)", file=sys.stderr)
        if kitchen.chef_seconds is not None:
            ranked = sorted(kitchen.chef_seconds.items(), key=lambda kv: -kv[1])
            print(f"{PROG}: time in chefs: "
                  + ", ".join(f"{chef} {secs:.2f}s" for chef, secs in ranked), file=sys.stderr)
            if st.fragments or st.decapsulated:
                print(f"{PROG}: {st.fragments} IP fragments made {st.datagrams_reassembled} "
                      f"datagrams; {st.decapsulated} tunnelled packets looked into",
                      file=sys.stderr)
        for line in idle_chefs(kitchen, chosen=chosen):
            print(f"{PROG}: {line}", file=sys.stderr)
        if kitchen.chef_seconds is None and kernel_drops:
            print(f"{PROG}: the chefs did not keep up with the capture: -v shows the time each "
                  f"chef takes (leave slow ones out with -c), a filter (-f) passes fewer "
                  f"packets", file=sys.stderr)
    # A chef that only ever raised made nothing: the run failed for it, whatever the rest did.
    for chef, n in kitchen.chef_errors.items():
        if n and not kitchen.dumplings_by_chef.get(chef):
            print(f"{PROG}: error: {chef} raised on everything it was given ({n} errors, no "
                  "dumplings; the first error is shown above with its traceback)",
                  file=sys.stderr)
            code = 1
    if error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
