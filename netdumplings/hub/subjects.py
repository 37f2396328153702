"""The names and limits several hubs share on NATS: subjects for dumplings, status and
presence, the origin header, hub ids, outbox and replay bounds. Pure functions (no
connection), so the backplane's naming rules are tested on their own.

A kitchen or chef name becomes one subject token: NATS reserves ``.``, ``*``, ``>`` and
whitespace, so those bytes (and ``%``) are written ``%XX``; ``%`` alone stands for no
kitchen (hub status) and ``%%`` for the empty name.
"""

from __future__ import annotations

import re
import secrets
import socket
from typing import Any, Iterable

from ..wire.messages import NOTICE_CHEF, STATUS_CHEF

DUMPLINGS = "dumplings"
STATUS = "status"
STREAM = "ND_DUMPLINGS"
H_ORIGIN = "Nd-Origin"  # "<hub-id escaped> <seq> <driver>"
#: On presence messages only: a random value per hub process, so two hubs started with the
#: same --hub-id find out (each takes the other's dumplings for its own and skips them).
H_INSTANCE = "Nd-Instance"
NULL_TOKEN = "%"      # kitchen None (hub status); never produced by escape()
EMPTY_TOKEN = "%%"    # "" (subject tokens cannot be empty)
MAX_SUBJECTS = 64     # beyond this many subjects, subscribe to everything and filter locally
OUTBOX = 100_000      # dumplings held for NATS (while it is away, or in a burst); oldest
                      # dropped beyond, and counted
DEDUPE = 8192         # recent (hub, seq) remembered per origin hub
REPLAY_MAX_MSGS = 100_000
REPLAY_WAIT = 10.0    # seconds an eater's replay may take at most
PRESENCE = "hubs"     # hubs.<hub-id>: "up" after (re)connecting, "here" in answer
HOLD_MAX = 5.0        # seconds the outbox waits after a reconnect for the other hubs
PEER_TTL = 60.0       # a hub heard from this recently is expected back after an outage
MAX_SUBJECT = 1024    # bytes of a dumpling subject at most: nats-server closes a connection
                      # whose protocol line passes 4096 bytes (max_control_line), and nats-py
                      # would send the same line again after reconnecting
WARN_EVERY = 10.0     # seconds between warnings about the same kind of unpublishable dumpling


_SPECIAL = frozenset(b".*>%")
_HUB_CHEFS = frozenset((STATUS_CHEF, NOTICE_CHEF))


def escape(name: str | None) -> str:
    """A kitchen/chef/hub name as one NATS subject token, reversibly: printable ASCII except
    ``. * > %`` stays, every other byte of its UTF-8 becomes ``%XX``."""
    if name is None:
        return NULL_TOKEN
    if name == "":
        return EMPTY_TOKEN
    out = []
    for b in name.encode("utf-8"):
        if 0x21 <= b <= 0x7E and b not in _SPECIAL:
            out.append(chr(b))
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


_HEX = re.compile(r"%([0-9A-F]{2})")


def unescape(token: str) -> str | None:
    if token == NULL_TOKEN:
        return None
    if token == EMPTY_TOKEN:
        return ""
    if "%" not in token:
        return token
    raw = bytearray()
    i = 0
    while i < len(token):
        m = _HEX.match(token, i)
        if m:
            raw.append(int(m.group(1), 16))
            i = m.end()
        else:
            raw.extend(token[i].encode("utf-8"))
            i += 1
    return raw.decode("utf-8", "replace")


def dumpling_subject(kitchen: str | None, chef: str) -> str:
    return f"{DUMPLINGS}.{escape(kitchen)}.{escape(chef)}"


def subject_fits(subject: str) -> bool:
    """Short enough for NATS (see ``MAX_SUBJECT``); tokens are ASCII, so chars == bytes."""
    return len(subject) <= MAX_SUBJECT


def parse_subject(subject: str) -> tuple[str | None, str] | None:
    parts = subject.split(".")
    if len(parts) != 3 or parts[0] != DUMPLINGS:
        return None
    return unescape(parts[1]), unescape(parts[2]) or ""


def interest_subjects(hellos: Iterable[Any], max_subjects: int = MAX_SUBJECTS) -> list[str]:
    """The fewest subjects that cover every eater's ``chefs`` x ``kitchens`` filter (driver
    filters are left to the hub). An eater without both filters needs everything."""
    wanted: set[tuple[str, str]] = set()
    for h in hellos:
        kitchens, chefs = h.kitchens, h.chefs
        if chefs is not None:
            # hub status and notices never travel on dumplings.*: asking only for them
            # needs no subscription at all
            chefs = [c for c in chefs if c not in _HUB_CHEFS]
            if not chefs:
                continue
        if kitchens is None and chefs is None:
            return [f"{DUMPLINGS}.>"]
        ks = ["*"] if kitchens is None else [escape(k) for k in kitchens]
        cs = ["*"] if chefs is None else [escape(c) for c in chefs]
        # A name too long for a subject is never published (see NatsBackplane.publish):
        # subscribing to it would only make nats-server drop the connection.
        ks = [k for k in ks if subject_fits(f"{DUMPLINGS}.{k}.*")]
        cs = [c for c in cs if subject_fits(f"{DUMPLINGS}.*.{c}")]
        if not ks or not cs:
            continue
        if len(ks) * len(cs) > max_subjects:
            if len(ks) <= max_subjects and kitchens is not None:
                cs = ["*"]
            elif len(cs) <= max_subjects and chefs is not None:
                ks = ["*"]
            else:
                return [f"{DUMPLINGS}.>"]
        wanted.update((k, c) for k in ks for c in cs)
    if ("*", "*") in wanted:
        return [f"{DUMPLINGS}.>"]
    # leave out what a wildcard subject already covers
    any_kitchen = {c for k, c in wanted if k == "*"}
    any_chef = {k for k, c in wanted if c == "*"}
    kept = sorted((k, c) for k, c in wanted
                  if (k == "*" or c == "*") or (c not in any_kitchen and k not in any_chef))
    if len(kept) > max_subjects:
        return [f"{DUMPLINGS}.>"]
    return [f"{DUMPLINGS}.{k}.{c}" for k, c in kept if subject_fits(f"{DUMPLINGS}.{k}.{c}")]


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h``, ``1d`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m:
        raise ValueError(f"bad duration {text!r} (use e.g. 90s, 10m, 2h, 1d)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def new_hub_id() -> str:
    host = socket.gethostname().split(".")[0] or "hub"
    return f"{host}-{secrets.token_hex(3)}"


def order_key(msg: Any) -> tuple[str, int]:
    origin, seq, _ = origin_of(msg)
    return origin or "", seq


def origin_of(msg: Any) -> tuple[str | None, int, str]:
    """(hub id escaped, sequence, driver) from ``Nd-Origin``; (None, 0, "packet") without."""
    value = (msg.headers or {}).get(H_ORIGIN)
    if not value:
        return None, 0, "packet"
    parts = value.split(" ")
    seq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return parts[0], seq, parts[2] if len(parts) > 2 else "packet"
