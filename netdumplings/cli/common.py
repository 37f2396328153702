"""What every command shares: logging, --version, tokens from env/files, clean errors."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
import time
from typing import Any, Awaitable, Callable, NoReturn

from .._version import __version__
from ..wire.messages import parse_hub_address


class Parser(argparse.ArgumentParser):
    """argparse, with netdumplings 0.5's ``-h HOST:PORT`` caught: ``-h`` is help in every
    command, and a 0.5 script that gives it the hub would otherwise print the help and
    exit 0 without running anything."""

    #: Flags that take a value here but none in tcpdump: given as tcpdump's (no value),
    #: the error says what the letter means here and why tcpdump's is not needed.
    tcpdump_habits: dict[str, str] = {}

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        has_hub = any("--hub" in a.option_strings for a in self._actions)
        for i, word in enumerate(argv):
            if word == "--":
                break
            following = argv[i + 1] if i + 1 < len(argv) else None
            if word == "-h" and has_hub and following and not following.startswith("-"):
                self.error(f"-h is --help here; netdumplings 0.5's -h {following} (the hub) "
                           f"is --hub {following}")
            if word in self.tcpdump_habits and (following is None or (
                    following.startswith("-") and not _is_number(following))):
                self.error(self.tcpdump_habits[word])
        return super().parse_known_args(args, namespace)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    p = Parser(prog=prog, description=description, epilog=epilog,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s (netdumplings) {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more log output on stderr (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    return p


def number(kind: type = float, *, low: float | None = None, high: float | None = None,
           above: bool = False) -> Callable[[str], Any]:
    """An argparse ``type`` for a number in a range: ``low`` is the least value allowed (or,
    with ``above``, the value it must exceed), ``high`` the greatest. A value outside gives
    argparse's one-line usage error (exit 2) instead of a hang or a traceback later on."""

    def convert(text: str) -> Any:
        value = kind(text)  # ValueError -> "invalid float value: 'x'"
        if isinstance(value, float) and math.isnan(value):
            raise argparse.ArgumentTypeError(f"not a number: {text!r}")
        if low is not None and (value <= low if above else value < low):
            raise argparse.ArgumentTypeError(
                f"must be {'greater than' if above else 'at least'} {low:g} (got {text})")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g} (got {text})")
        return value

    convert.__name__ = kind.__name__
    return convert


POSITIVE = number(float, low=0, above=True)
NON_NEGATIVE = number(float, low=0)
POSITIVE_INT = number(int, low=1)
PORT = number(int, low=0, high=65535)


def hub_address(prog: str, option: str, address: str, default_port: int
                ) -> tuple[str, int, bool]:
    """``parse_hub_address``; a bad address exits with one line."""
    try:
        return parse_hub_address(address, default_port)
    except ValueError as exc:
        fail(prog, f"{option}: {exc}", 2)


#: After Ctrl-C, the longest the kitchen waits for a connected hub to take the last
#: dumplings (none at all for a hub that is not connected): Ctrl-C ends it within 2 s.
INTERRUPT_FLUSH = 1.0


def exit_on_second_interrupt(prog: str, undelivered: Callable[[], int]) -> None:
    """From now on Ctrl-C ends the process at once (status 130), saying what it leaves."""

    def now(signum: int, frame: Any) -> None:
        n = undelivered()
        os.write(2, (f"{prog}: interrupted again: exiting now"
                     + (f"; {n} dumplings not delivered (held in memory only: lost)" if n
                        else "") + "\n").encode())
        os._exit(130)

    signal.signal(signal.SIGINT, now)


def close_sender(prog: str, sender: Any, timeout: float, hub: str,
                 interrupted: bool = False) -> bool:
    """Give the hub up to ``timeout`` seconds for the last dumplings, False with one error
    line if some were not taken. After an interrupt (``interrupted``, or Ctrl-C during the
    wait) the wait is cut to ``INTERRUPT_FLUSH`` for a connected hub and to nothing for one
    that is not, and a second Ctrl-C exits at once."""
    late = f"within {timeout:g}s"
    if interrupted:
        exit_on_second_interrupt(prog, lambda: len(sender.outbox))
        timeout = min(timeout, INTERRUPT_FLUSH if sender.connected.is_set() else 0.0)
        late = "before the interrupt"
    try:
        delivered = sender.close(timeout=timeout, join=0.2 if interrupted else 3.0)
    except KeyboardInterrupt:
        exit_on_second_interrupt(prog, lambda: len(sender.outbox))
        delivered = sender.close(timeout=0, join=0.2)
        late = "before the interrupt"
    if not delivered:
        print(f"{prog}: error: the hub at {hub} did not take {len(sender.outbox)} dumplings "
              f"{late} (they were held in memory only, and are lost)", file=sys.stderr)
    return delivered


def check_writable(prog: str, path: str) -> None:
    """Fail now, with one line, for an output file that cannot be created: files are
    opened at the first packet, which may come hours later. ``%`` patterns in the folder
    (strftime, %k) are only known then."""
    folder = os.path.dirname(path) or "."
    if "%" not in folder and not os.path.isdir(folder):
        fail(prog, f"cannot write {path}: no such directory {folder}")
    if "%" not in folder and not os.access(folder, os.W_OK | os.X_OK):
        fail(prog, f"cannot write {path}: directory {folder} is not writable")
    if os.path.isdir(path):
        fail(prog, f"cannot write {path}: it is a directory")


def setup_logging(args: argparse.Namespace) -> None:
    level = logging.ERROR if args.quiet else (
        logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING)
    logging.Formatter.converter = time.gmtime
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s.%(msecs)03dZ %(name)s %(levelname)s: %(message)s",
                        datefmt="%Y-%m-%dT%H:%M:%S")


def fail(prog: str, message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and a non-zero exit: no traceback for user mistakes."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def secret(value: str | None, file: str | None, env: str) -> str | None:
    """A token from a file (--x-token-file), the environment ($ENV) or, last, argv.

    Files and the environment keep tokens out of ``ps`` output; argv is allowed for quick
    tests only."""
    if file:
        try:
            with open(file) as fh:
                return fh.read().strip()
        except OSError as exc:
            fail(os.path.basename(sys.argv[0]) or "netdumplings",
                 f"cannot read token file {file}: {exc.strerror or exc}", 2)
    if os.environ.get(env):
        return os.environ[env]
    return value


def add_color_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--color", action=argparse.BooleanOptionalAction, default=None,
                   help="colour output (default: when stdout is a terminal)")


class ChefOrCount(argparse.Action):
    """``-c VALUE``: a number is tcpdump's packet count (``-c 100``), anything else a chef
    name as in netdumplings 0.5 (``-c DNSLookupChef``). A chef is a Python class name,
    which never is all digits, so the two cannot be mistaken for each other; ``--count``
    and ``--chef`` say it without the guess."""

    def __init__(self, option_strings: list[str], dest: str, *, count: bool = True,
                 **kwargs: Any) -> None:
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)
        self.count = count

    def __call__(self, p: argparse.ArgumentParser, ns: argparse.Namespace, value: Any,
                 option_string: str | None = None) -> None:
        if value.isdigit():
            if not self.count:
                raise argparse.ArgumentError(self, f"{value!r} is a number, but this command "
                                                   "has no packet count: -c names a chef")
            try:
                setattr(ns, "count", POSITIVE_INT(value))
            except argparse.ArgumentTypeError as exc:
                raise argparse.ArgumentError(self, str(exc)) from None
        else:
            setattr(ns, "chef", [*(getattr(ns, "chef", None) or []), value])


def add_chef_or_count(p: argparse.ArgumentParser, *, count: bool = True, what: str = "run"
                      ) -> None:
    """``-c``: N (as tcpdump -c) or CHEF (as netdumplings 0.5); see ``ChefOrCount``."""
    p.add_argument("-c", action=ChefOrCount, count=count, dest="chef_or_count",
                   metavar="N|CHEF" if count else "CHEF",
                   help=(f"a number: stop after N (as --count, tcpdump's -c); a name: a chef to "
                         f"{what} (as --chef, netdumplings 0.5's -c)") if count else
                        f"a chef to {what} (as --chef)")


def add_chef_args(p: argparse.ArgumentParser, *, count: bool = True) -> None:
    """--chef-module / --chef / --chef-option, as nd-sniff and nd-cook take them."""
    p.add_argument("-m", "--chef-module", action="append", default=[], metavar="MODULE",
                   help="dotted module name or path to a .py file with chefs (repeatable)")
    p.add_argument("--chef", action="append", default=[], metavar="CHEF",
                   help="chef class to run (repeatable; default: all of the modules)")
    add_chef_or_count(p, count=count)
    p.add_argument("-o", "--chef-option", action="append", default=[], metavar="CHEF.KEY=VALUE",
                   help="set a chef option, e.g. FluentdForwardChef.ports=24224,24225")


def add_connection_args(p: argparse.ArgumentParser, *, role: str = "eater",
                        reconnect: bool | None = True, token_arg: bool = True) -> None:
    """Token, CA and reconnect options of a hub client (kitchen or eater)."""
    env = "ND_KITCHEN_TOKEN" if role == "kitchen" else "ND_EATER_TOKEN"
    if reconnect is not None:
        p.add_argument("--reconnect", action=argparse.BooleanOptionalAction, default=reconnect,
                       help="reconnect when the hub goes away (default: "
                            f"{'yes' if reconnect else 'no'})")
    if token_arg:
        p.add_argument("--token", help=f"{role} token (prefer ${env} or --token-file)")
    p.add_argument("--token-file", help=f"read the {role} token from a file (or set ${env})")
    p.add_argument("--cafile", help="CA bundle to verify a wss:// hub")


def run_until_signal(coro_factory: Callable[[], Awaitable[None]],
                     on_signal: Callable[[], None]) -> None:
    """``asyncio.run`` a client, turning SIGTERM/SIGINT into a clean ``on_signal`` stop."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await coro_factory()

    asyncio.run(main())
