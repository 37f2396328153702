"""nd-hubstatus's eater: a live one-screen view of a hub from its status dumplings."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from netdumplings.eater.client import DumplingEater
from netdumplings.wire.messages import STATUS_CHEF

from .terminal import duration, terminal_safe_lines


def _who(entry: dict[str, Any], key: str, name_key: str) -> str:
    info = entry.get(key) or {}
    hub = entry.get("info_from_hub") or {}
    return f"{info.get(name_key, '?')} ({hub.get('host', '?')}:{hub.get('port', '?')})"


def render_status(status: dict[str, Any], rates: tuple[float, float] | None = None,
                  hub: str = "") -> str:
    """The status screen as text (also used by tests)."""
    lines = [f"netdumplings hub {hub}  uptime {duration(status.get('server_uptime', 0))}"]
    rin, rout = rates if rates else (0.0, 0.0)
    lines.append(f"dumplings in: {status.get('total_dumplings_in', 0)} ({rin:.1f}/s)   "
                 f"out: {status.get('total_dumplings_out', 0)} ({rout:.1f}/s)   "
                 f"dropped: {status.get('total_dumplings_dropped', 0)}   "
                 f"invalid: {status.get('total_dumplings_invalid', 0)}")
    kitchens = status.get("dumpling_kitchens") or []
    lines.append(f"kitchens: {status.get('dumpling_kitchen_count', len(kitchens))}")
    for k in kitchens:
        info = k.get("info_from_kitchen") or {}
        extra = f"  {k['dumplings']} dumplings" if "dumplings" in k else ""
        lines.append(f"  {_who(k, 'info_from_kitchen', 'kitchen_name')}  "
                     f"interface={info.get('interface')} filter={info.get('filter')!r} "
                     f"chefs={','.join(info.get('chefs') or [])}{extra}")
    eaters = status.get("dumpling_eaters") or []
    lines.append(f"eaters: {status.get('dumpling_eater_count', len(eaters))}")
    for e in eaters:
        extra = ""
        if "queue_depth" in e:
            extra = (f"  sent={e.get('sent', 0)} queue={e['queue_depth']}/"
                     f"{e.get('queue_size', '?')} dropped={e.get('dropped', 0)}")
        lines.append(f"  {_who(e, 'info_from_eater', 'eater_name')}{extra}")
    return "\n".join(lines)


def render_cluster(hubs: list[tuple[str, dict[str, Any], tuple[float, float] | None, bool]],
                   via: str = "") -> str:
    """Several hubs sharing a backplane: a cluster total, then each hub as ``render_status``.
    ``hubs`` holds (hub id, status, rates, stale)."""
    total_in = sum(st.get("total_dumplings_in", 0) for _, st, _, _ in hubs)
    total_out = sum(st.get("total_dumplings_out", 0) for _, st, _, _ in hubs)
    kitchens = sum(st.get("dumpling_kitchen_count", 0) for _, st, _, _ in hubs)
    eaters = sum(st.get("dumpling_eater_count", 0) for _, st, _, _ in hubs)
    lines = [f"netdumplings cluster via {via}: {len(hubs)} hubs, {kitchens} kitchens, "
             f"{eaters} eaters, dumplings in: {total_in} out: {total_out}"]
    for hub_id, status, rates, stale in hubs:
        bp = status.get("backplane") or {}
        state = "connected" if bp.get("connected") else "backplane DOWN"
        lines.append("")
        lines.append(render_status(status, rates, f"{hub_id} [{state}]"
                                   f"{' (stale)' if stale else ''}"))
    return "\n".join(lines)


class HubStatusEater(DumplingEater):
    """Shows one hub, or every hub of a backplane cluster: hubs on a backplane relay each
    other's status dumplings, which carry a ``hub_id``."""

    STALE = 30.0   # seconds without a status before a hub is shown as stale, 3x as long: gone

    def __init__(self, *, once: bool = False, out: TextIO | None = None, color: bool = False,
                 **kwargs: Any) -> None:
        kwargs.setdefault("chef_filter", [STATUS_CHEF])
        super().__init__(**kwargs)
        self.once = once
        #: Bold headings (each hub's first line, the kitchens/eaters counts), as 0.5's
        #: --color bolded its figures.
        self.color = color
        self.out = out or sys.stdout
        self._last: tuple[float, int, int] | None = None
        # hub id -> (status, rates, seen at, (t, in, out) for the next rate)
        self.hubs: dict[str, tuple[dict[str, Any], tuple[float, float] | None, float,
                                   tuple[float, int, int]]] = {}

    async def on_dumpling(self, dumpling: dict[str, Any]) -> None:
        md = dumpling.get("metadata") or {}
        if md.get("chef") != STATUS_CHEF:
            return
        status = dumpling.get("payload") or {}
        now = time.monotonic()
        din, dout = status.get("total_dumplings_in", 0), status.get("total_dumplings_out", 0)
        hub_id = status.get("hub_id")
        if hub_id is not None:
            self._cluster(str(hub_id), status, now, din, dout)
            return
        rates = None
        if self._last is not None:
            dt = max(now - self._last[0], 1e-6)
            rates = ((din - self._last[1]) / dt, (dout - self._last[2]) / dt)
        self._last = (now, din, dout)
        self._show(render_status(status, rates, self.hub))

    def _cluster(self, hub_id: str, status: dict[str, Any], now: float, din: int,
                 dout: int) -> None:
        prev = self.hubs.get(hub_id)
        rates = None
        if prev is not None:
            t, pin, pout = prev[3]
            dt = max(now - t, 1e-6)
            rates = ((din - pin) / dt, (dout - pout) / dt)
        self.hubs[hub_id] = (status, rates, now, (now, din, dout))
        for gone in [h for h, v in self.hubs.items() if now - v[2] > 3 * self.STALE]:
            del self.hubs[gone]
        if self.once and prev is None:
            return  # --once: wait for a whole status period, so every hub has reported
        hubs = [(h, v[0], v[1], now - v[2] > self.STALE) for h, v in sorted(self.hubs.items())]
        self._show(render_cluster(hubs, self.hub))

    def _show(self, text: str) -> None:
        if self.out.isatty() and not self.once:
            self.out.write("\x1b[H\x1b[2J")
        # names, interfaces and filters come from peers' hellos: no escape sequences
        text = terminal_safe_lines(text)
        if self.color:
            text = "\n".join(f"\x1b[1m{line}\x1b[0m" if line and not line.startswith(" ")
                             else line for line in text.split("\n"))
        self.out.write(text + "\n")
        self.out.flush()
        if self.once:
            self.stop()
