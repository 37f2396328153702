"""What every command shares: logging, --version, tokens from env/files, clean errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import NoReturn

from .. import __version__


def parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s (netdumplings) {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more log output on stderr (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    return p


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
        with open(file) as fh:
            return fh.read().strip()
    if os.environ.get(env):
        return os.environ[env]
    return value


def add_color_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--color", action=argparse.BooleanOptionalAction, default=None,
                   help="colour output (default: when stdout is a terminal)")
