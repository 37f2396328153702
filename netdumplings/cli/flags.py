"""The short flags of every command, read from their parsers: the table in docs/cli/index.md.

A short flag means one thing in every command, tcpdump's meaning where tcpdump has the same
thing (a user's fingers know ``-i``, ``-r``, ``-w``, ``-c``), netdumplings 0.5's where 0.5
had the letter and tcpdump's meaning does not apply (their scripts keep working). The one
exception is ``nd-hub``, which reads no packets and keeps 0.5's ``-i``/``-o``/``-f`` for its
ports and status frequency. ``tests/cli/test_cli_flags.py`` checks the parsers against this
module and ``scripts/gen_cli_docs.py`` writes the table from it.
"""

from __future__ import annotations

import argparse
import importlib

#: Command -> the module whose ``build_parser()`` it runs.
COMMANDS = {
    "nd-sniff": "sniff", "nd-print": "print", "nd-hub": "hub", "nd-hubstatus": "hubstatus",
    "nd-hubdetails": "hubdetails", "nd-demo": "demo", "nd-cook": "cook", "nd-dump": "dump",
    "nd-web": "web",
}

#: Letter -> (what it means in every command that has it, where the meaning comes from).
MEANINGS: dict[str, tuple[str, str]] = {
    "-h": ("help", "tcpdump, argparse; 0.5 had only --help and used -h for --hub, which "
                   "is long-only now (-h HOST:PORT is refused, naming --hub)"),
    "-v": ("more log output (-vv: debug)", "tcpdump"),
    "-q": ("only errors on stderr", "tcpdump"),
    "-i": ("interface to capture on (nd-hub: its kitchens' port, as in 0.5)",
           "tcpdump; nd-hub: 0.5"),
    "-r": ("read packets from a pcap/pcapng file ('-' = stdin)", "tcpdump"),
    "-w": ("write packets to a pcap/pcapng file ('-' = stdout)", "tcpdump"),
    "-s": ("snaplen: bytes kept per packet", "tcpdump"),
    "-D": ("list the interfaces", "tcpdump"),
    "-F": ("read the capture filter from a file", "tcpdump"),
    "-C": ("rotate output files at this size (MB)", "tcpdump"),
    "-G": ("rotate output files every this many seconds", "tcpdump"),
    "-c": ("a number: stop after N (tcpdump's -c); a name: a chef (0.5's -c)",
           "tcpdump and 0.5: a chef's name is a class name, never all digits"),
    "-f": ("the capture filter in one argument (nd-hub: seconds between status dumplings, "
           "as in 0.5)", "0.5; tcpdump's -f (print foreign addresses numerically) has "
                         "nothing to print here"),
    "-n": ("the name this client shows the hub (kitchen or eater)",
           "0.5; tcpdump's -n (do not resolve names) has nothing to switch off: no "
           "command resolves names"),
    "-p": ("seconds between chefs' interval handlers (poke interval)",
           "0.5; tcpdump's -p (no promiscuous mode) has nothing to switch off: nd-sniff "
           "never turns promiscuous mode on"),
    "-m": ("a module (or .py file) with chefs", "0.5"),
    "-l": ("list the chefs and exit", "0.5; tcpdump's -l (line-buffered output) is "
                                      "always so: dumplings are written a line at a time"),
    "-k": ("only dumplings (or packets) from this kitchen", "0.5"),
    "-o": ("a chef option CHEF.KEY=VALUE (nd-hub: its eaters' port, as in 0.5)",
           "this project; nd-hub: 0.5"),
    "-a": ("address to listen on", "0.5"),
}

#: Letters nd-hub keeps from 0.5 with another meaning than the capturing commands'.
HUB_OWN = frozenset({"-i", "-o", "-f"})

#: Long options that are the same thing under another name in another command.
SAME = {"--eater-name": "--kitchen-name", "--from-kitchen": "--kitchen",
        "--count": "-c", "--chef": "-c"}


def build_parser(command: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"netdumplings.cli.{COMMANDS[command]}")
    return module.build_parser()


def short_flags(p: argparse.ArgumentParser) -> dict[str, str]:
    """Short flag -> the long option it is (itself when it has none)."""
    from .common import ChefOrCount
    out = {}
    for action in p._actions:
        shorts = [o for o in action.option_strings if len(o) == 2]
        longs = [o for o in action.option_strings if o.startswith("--")]
        if isinstance(action, ChefOrCount):
            longs = ["--count N, --chef CHEF" if action.count else "--chef"]
        for short in shorts:
            out[short] = longs[0] if longs else short
    return out


def table() -> dict[str, dict[str, str]]:
    """Letter -> {command: its long option} over every command."""
    rows: dict[str, dict[str, str]] = {}
    for command in COMMANDS:
        for short, long in short_flags(build_parser(command)).items():
            rows.setdefault(short, {})[command] = long
    return dict(sorted(rows.items(), key=lambda kv: (kv[0].lower(), kv[0])))


def render() -> str:
    """The Markdown table of docs/cli/index.md."""
    rows = table()
    head = "| flag | means | from | " + " | ".join(f"`{c}`" for c in COMMANDS) + " |"
    lines = [head, "|" + " --- |" * (3 + len(COMMANDS))]
    for short, where in rows.items():
        meaning, origin = MEANINGS.get(short, ("?", "?"))
        cells = [f"`{where[c]}`" if c in where and where[c] != short else
                 ("✓" if c in where else "") for c in COMMANDS]
        lines.append(f"| `{short}` | {meaning} | {origin} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
