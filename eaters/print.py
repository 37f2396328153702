"""nd-print's eater: dumplings as readable lines, JSON lines, or a user format string.

The readable form uses a payload's ``summary`` (the one-line view every bundled flow chef
provides, like zmtpdump's or caproto-shark's lines) and falls back to indented JSON.
"""

from __future__ import annotations

import datetime as _dt
import string
import sys
from typing import Any, TextIO

import orjson

from netdumplings.wire.messages import STATUS_CHEF

from netdumplings.eater.client import DumplingEater

from .terminal import duration, terminal_safe, terminal_safe_lines

_COLORS = {"time": "\x1b[2m", "chef": "\x1b[36m", "kitchen": "\x1b[33m",
           "interval": "\x1b[35m", "notice": "\x1b[31m", "reset": "\x1b[0m"}


class _Missing(str):
    """What a format field shows when the dumpling has no such value."""

    def __getitem__(self, key: Any) -> "_Missing":
        return self

    def __getattr__(self, name: str) -> "_Missing":
        return self

    def __format__(self, spec: str) -> str:
        return "-"


MISSING = _Missing("-")


class _View(dict):
    """A payload dict for format strings: missing keys show '-' instead of failing."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str) and key.isdigit() and key not in self:
            key = int(key)
        try:
            value = dict.__getitem__(self, key)
        except (KeyError, TypeError):
            return MISSING
        return _wrap(value)

    def __missing__(self, key: Any) -> Any:
        return MISSING


class _ListView(list):
    def __getitem__(self, index: Any) -> Any:
        try:
            return _wrap(list.__getitem__(self, int(index)))
        except (IndexError, ValueError, TypeError):
            return MISSING


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return _View(value)
    if isinstance(value, list):
        return _ListView(value)
    return value


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        # Each substituted value is made terminal-safe; the user's own format text (which
        # may hold colour codes on purpose) is left as written.
        return terminal_safe(super().format_field(value, format_spec))

    def get_value(self, key: Any, args: Any, kwargs: Any) -> Any:
        if isinstance(key, int):
            return MISSING
        return kwargs.get(key, MISSING)

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        try:
            return super().get_field(field_name, args, kwargs)
        except (AttributeError, KeyError, IndexError, TypeError):
            return MISSING, field_name


_formatter = _Formatter()


def format_namespace(dumpling: dict[str, Any]) -> dict[str, Any]:
    """Names a ``--format`` string can use: ``metadata``, ``payload``, every metadata field
    (``chef``, ``kitchen``, ``driver``, ``sequence`` ...), ``timestamp`` (capture time, else
    creation time, as a datetime: ``{timestamp:%H:%M:%S.%f}`` works), and ``src``, ``dst``,
    ``summary`` from the payload when it has them."""
    md = dumpling.get("metadata") or {}
    payload = dumpling.get("payload")
    ns: dict[str, Any] = {k: _wrap(v) for k, v in md.items()}
    ts = md.get("capture_time") or md.get("creation_time")
    ns["timestamp"] = _Timestamp.fromtimestamp(ts) if isinstance(ts, (int, float)) else MISSING
    ns["metadata"] = _wrap(md)
    ns["payload"] = _wrap(payload)
    if isinstance(payload, dict):
        for key in ("src", "dst", "summary", "direction"):
            if key in payload:
                ns[key] = payload[key]
    ns["json"] = orjson.dumps(payload).decode()
    return ns


class _Timestamp(_dt.datetime):
    def __str__(self) -> str:
        return self.isoformat(sep=" ", timespec="microseconds")


def format_dumpling(dumpling: dict[str, Any], fmt: str) -> str:
    fmt = fmt.encode().decode("unicode_escape") if "\\" in fmt else fmt
    return _formatter.vformat(fmt, (), format_namespace(dumpling))


_SAMPLE = {"metadata": {"chef": "SampleChef", "kitchen": "sample", "driver": "packet",
                       "sequence": 1, "host": "sample", "creation_time": 0.0,
                       "capture_time": 0.0},
           "payload": {"summary": "sample", "src": "192.0.2.1:1", "dst": "192.0.2.2:2"}}

FORMAT_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)


def check_format(fmt: str) -> None:
    """Raise ValueError if ``fmt`` cannot format even a plain dumpling (an unclosed brace,
    an unknown conversion, a format spec that fits no dumpling field), so ``--format``
    mistakes stop the command at once instead of failing on every dumpling."""
    try:
        format_dumpling(_SAMPLE, fmt)
    except FORMAT_ERRORS as exc:
        raise ValueError(f"bad format string {fmt!r}: {exc}") from exc


def pretty(dumpling: dict[str, Any], *, payload: bool = True, color: bool = False) -> str:
    md = dumpling.get("metadata") or {}
    c = _COLORS if color else {k: "" for k in _COLORS}
    ts = md.get("capture_time") or md.get("creation_time") or 0
    when = _dt.datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="milliseconds")
    seq = f" #{md['sequence']}" if md.get("sequence") is not None else ""
    driver = md.get("driver", "?")
    dcol = c["interval"] if driver == "interval" else ""
    kitchen = terminal_safe(str(md.get("kitchen") or "hub"))
    chef = terminal_safe(str(md.get("chef")))
    head = (f"{c['time']}{when}{c['reset']} {c['kitchen']}{kitchen}"
            f"{c['reset']}/{c['chef']}{chef}{c['reset']} {dcol}{terminal_safe(str(driver))}"
            f"{c['reset']}{seq}")
    if not payload:
        return head
    body = dumpling.get("payload")
    if isinstance(body, dict) and isinstance(body.get("summary"), str):
        return f"{head}  {terminal_safe(body['summary'])}"
    text = orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    # JSON escapes C0 controls but not C1 controls or bidi overrides
    text = terminal_safe_lines(text)
    if "\n" not in text:
        return f"{head}  {text}"
    return head + "\n" + "\n".join("    " + line for line in text.splitlines())


def status_line(dumpling: dict[str, Any], *, color: bool = False) -> str:
    """A hub status dumpling as one line: the figures nd-hubstatus leads with."""
    st = dumpling.get("payload") or {}
    if not isinstance(st, dict):
        st = {}
    head = pretty(dumpling, payload=False, color=color)
    dropped = st.get("total_dumplings_dropped") or 0
    return (f"{head}  hub up {duration(st.get('server_uptime') or 0)}, "
            f"{st.get('dumpling_kitchen_count', 0)} kitchens, "
            f"{st.get('dumpling_eater_count', 0)} eaters, dumplings in "
            f"{st.get('total_dumplings_in', 0)} out {st.get('total_dumplings_out', 0)}"
            + (f" dropped {dropped}" if dropped else "") + " (nd-hubstatus for more)")


class Printer:
    """Turns dumplings into output lines (shared by nd-print and nd-sniff --print)."""

    def __init__(self, *, mode: str = "pretty", fmt: str | None = None, payload: bool = True,
                 color: bool = False, packet_dumplings: bool = True,
                 interval_dumplings: bool = True, out: TextIO | None = None,
                 prog: str = "nd-print", hub_status: str = "full") -> None:
        self.mode = "format" if fmt else mode
        #: The hub's own status dumplings (every few seconds, 40 lines each when pretty):
        #: "full" as any dumpling, "line" one summary line, "off" not shown.
        self.hub_status = hub_status
        self.fmt = fmt
        self.payload = payload
        self.color = color
        self.packet_dumplings = packet_dumplings
        self.interval_dumplings = interval_dumplings
        self.out = out or sys.stdout
        self.printed = 0
        self.format_errors = 0
        self.prog = prog

    def wants(self, dumpling: dict[str, Any]) -> bool:
        md = dumpling.get("metadata") or {}
        if self.hub_status == "off" and md.get("chef") == STATUS_CHEF:
            return False
        driver = md.get("driver")
        if driver == "packet" and not self.packet_dumplings:
            return False
        if driver == "interval" and not self.interval_dumplings:
            return False
        return True

    def line(self, dumpling: dict[str, Any], raw: bytes | None = None) -> str:
        if self.mode == "json":
            return (raw or orjson.dumps(dumpling, option=orjson.OPT_NON_STR_KEYS)).decode()
        if self.mode == "format":
            return format_dumpling(dumpling, self.fmt or "")
        if self.hub_status == "line" and (dumpling.get("metadata") or {}).get("chef") == \
                STATUS_CHEF:
            return status_line(dumpling, color=self.color)
        return pretty(dumpling, payload=self.payload, color=self.color)

    def print(self, dumpling: dict[str, Any], raw: bytes | None = None) -> bool:
        if not self.wants(dumpling):
            return False
        try:
            text = self.line(dumpling, raw)
        except FORMAT_ERRORS as exc:
            # --format over a dumpling whose values do not fit it (a number spec on text...):
            # skip that one, say so once, count the rest.
            self.format_errors += 1
            if self.format_errors == 1:
                chef = (dumpling.get("metadata") or {}).get("chef")
                print(f"{self.prog}: warning: --format failed on a {chef} dumpling ({exc}); "
                      "such dumplings are skipped and counted", file=sys.stderr)
            return False
        try:
            self.out.write(text + "\n")
            self.out.flush()
        except BrokenPipeError:  # `nd-print | head`
            raise SystemExit(0)
        self.printed += 1
        return True


class PrintEater(DumplingEater):
    """An eater that prints what it receives; ``count`` stops it after N printed."""

    def __init__(self, printer: Printer, *, count: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.printer = printer
        self.count = count
        self._reported_down = False  # one line per outage, not one per reconnect attempt

    async def on_connect(self, hub_uri: str, websocket: Any) -> None:
        self._reported_down = False
        print(f"nd-print: connected to {hub_uri}", file=sys.stderr)

    async def on_dumpling(self, dumpling: dict[str, Any]) -> None:
        if self.printer.print(dumpling) and self.count is not None \
                and self.printer.printed >= self.count:
            self.stop()

    async def on_missed(self, notice: dict[str, Any]) -> None:
        # On stderr whatever --chef / --no-interval-dumplings say: loss is never silent.
        print(f"nd-print: the hub dropped {notice.get('missed')} dumplings for this eater "
              f"(its queue was full; {notice.get('missed_total')} in all)", file=sys.stderr)

    async def on_connection_lost(self, exc: BaseException) -> None:
        if self._reported_down:
            return
        self._reported_down = self.reconnect
        if self.websocket is None:  # the connection attempt itself failed
            what = f"cannot reach the hub at {self.hub_ws}"
        else:
            what = "connection to the hub lost"
        from netdumplings.eater.hints import refused_hint
        hint = refused_hint(self.hub_ws, exc) if self.websocket is None else ""
        print(f"nd-print: {what} ({exc or type(exc).__name__})"
              + ("; reconnecting" if self.reconnect else "")
              + (f"\nnd-print: {hint}" if hint else ""), file=sys.stderr)
