"""nd-demo: the whole pipeline in one command, no root, no second terminal.

Starts a hub on free loopback ports, a printing eater, and a kitchen that replays a bundled
capture (DNS, HTTP/1.1, HTTP/2, gRPC, Fluentd, ZeroMQ, EPICS CA and ARP traffic recorded
from real peers) through the bundled chefs (all but the opt-in ones); prints what the eater
receives, then a summary. Its stdout may be closed early (``nd-demo | head``): it then stops
printing and ends at once, with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from importlib import resources

from ..eater.client import DumplingEater
from ..hub.server import Hub
from ..kitchen.kitchen import Kitchen
from ..kitchen.registry import bundled_chefs
from ..wire.sender import HubSender
from ..capture.sources import CaptureError, PcapSource
from ..wire.messages import STATUS_CHEF
from .common import add_chef_or_count, add_color_flags, fail, parser, setup_logging

PROG = "nd-demo"


def demo_capture() -> str:
    return str(resources.files("netdumplings") / "data" / "demo.pcap")


#: Chef options the bundled capture needs: its Fluentd traffic was recorded on port 24230,
#: not the default 24224. Said at the end of every run, with the nd-sniff command that
#: decodes the same, so replaying the capture with nd-sniff hides nothing.
DEMO_OPTIONS = {"FluentdForwardChef": {"ports": "24224,24230"}}


def demo_options(names: list[str]) -> dict[str, dict[str, str]]:
    return {chef: opts for chef, opts in DEMO_OPTIONS.items() if chef in names}


def sniff_equivalent(capture: str, names: list[str], all_default: bool) -> str:
    """The nd-sniff command that decodes ``capture`` as nd-demo just did."""
    words = ["nd-sniff", "-r", capture, "-p", "0"]
    if not all_default:
        for name in names:
            words += ["-c", name]
    for chef, opts in demo_options(names).items():
        words += ["-o", ",".join(f"{chef}.{k}={v}" for k, v in opts.items())]
    return " ".join(words + ["--print"])


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, "Run hub + kitchen (replaying a bundled capture through the bundled chefs)"
                     " + printer in one process, and print the dumplings.",
               "Short flags: -r as tcpdump, -c CHEF as nd-sniff (netdumplings 0.5).\n"
               "The table of every command's flags: docs/cli/index.md.")
    p.add_argument("-r", "--read", default=None, metavar="FILE",
                   help="capture to replay (default: the bundled demo capture)")
    p.add_argument("--chef", action="append", help="chef to run (default: all bundled, "
                   "except opt-in ones)")
    add_chef_or_count(p, count=False)
    p.add_argument("--json", action="store_true", help="print compact JSON lines")
    p.add_argument("--no-payload", dest="payload", action="store_false",
                   help="one line per dumpling, without payloads")
    add_color_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    from netdumplings.eaters.print import Printer

    chefs = bundled_chefs()
    names = args.chef or [n for n, c in chefs.items() if not getattr(c, "opt_in", False)]
    unknown = [n for n in names if n not in chefs]
    if unknown:
        fail(PROG, f"unknown chef(s) {', '.join(unknown)} (available: {', '.join(chefs)})", 2)
    capture = args.read or demo_capture()
    printer = Printer(mode="json" if args.json else "pretty", payload=args.payload,
                      color=args.color if args.color is not None else sys.stdout.isatty())

    loop = asyncio.new_event_loop()
    hub = Hub("127.0.0.1", 0, 0, status_freq=1.0)
    loop.run_until_complete(hub.start())
    got: list[dict] = []
    status_seen = threading.Event()
    stdout_closed = threading.Event()  # `nd-demo | head`: stop printing, finish quietly

    async def on_dumpling(d: dict) -> None:
        if d["metadata"]["chef"] == STATUS_CHEF:
            if d["payload"].get("total_dumplings_in"):
                status_seen.set()
            return
        if stdout_closed.is_set():
            return
        got.append(d)
        try:
            printer.print(d)
        except (SystemExit, BrokenPipeError):  # `| head` closed stdout
            stdout_closed.set()
            eater.stop()

    eater = DumplingEater("nd-demo-printer", f"127.0.0.1:{hub.out_port}", on_dumpling=on_dumpling)
    connected = threading.Event()

    async def on_connect(uri: str, ws: object) -> None:
        connected.set()
    eater.on_connect = on_connect  # type: ignore[method-assign]
    eater_task = loop.create_task(eater.eat())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    connected.wait(10)

    sender = HubSender("127.0.0.1", hub.in_port, {
        "kitchen_name": "demo", "interface": f"file:{capture}", "filter": None,
        "chefs": names, "poke_interval": None})
    sender.start()
    options = demo_options(names) if not args.read else {}
    kitchen = Kitchen("demo", [chefs[n] for n in names], sink=lambda d, b: sender.put(b),
                      poke_interval=None, chef_options=options)
    started = time.monotonic()
    error = None
    try:
        kitchen.run(PcapSource(capture))
    except CaptureError as exc:
        error = str(exc)
    kitchen.finish()
    sender.close(timeout=10)
    deadline = time.monotonic() + 10
    while len(got) < kitchen.stats.dumplings and time.monotonic() < deadline \
            and not stdout_closed.is_set():
        time.sleep(0.02)
    if not stdout_closed.is_set():
        status_seen.wait(3)
    eater.stop()

    async def shutdown() -> None:
        await asyncio.wait([eater_task], timeout=3)
        await hub.stop()
    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    st = kitchen.stats
    received = (f"the printer stopped after {len(got)} (its output was closed)"
                if stdout_closed.is_set() else
                f"the hub relayed them and the printer received {len(got)}")
    print(f"{PROG}: kitchen read {st.packets} packets from {capture} and made "
          f"{st.dumplings} dumplings; {received} in {time.monotonic() - started:.2f}s "
          f"({st.chef_errors} chef errors)", file=sys.stderr)
    if not args.read:
        print(f"{PROG}: the same with nd-sniff: "
              f"{sniff_equivalent(capture, names, not args.chef)}", file=sys.stderr)
    if error:
        fail(PROG, error)
    if stdout_closed.is_set():
        # whoever read stdout has seen enough: nothing left to check, nor to flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0 if len(got) == st.dumplings else 1


if __name__ == "__main__":
    sys.exit(main())
