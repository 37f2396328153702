"""nd-hubdetails's eater: every connected kitchen and eater in detail."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import orjson

from netdumplings.eater.client import DumplingEater
from netdumplings.eaters.print import terminal_safe_lines
from netdumplings.wire.messages import STATUS_CHEF


def render_details(status: dict[str, Any]) -> str:
    out = []
    kitchens = status.get("dumpling_kitchens") or []
    out.append(f"{len(kitchens)} kitchen(s)")
    for k in kitchens:
        info, hub = k.get("info_from_kitchen") or {}, k.get("info_from_hub") or {}
        out.append(f"- kitchen {info.get('kitchen_name')!r} from {hub.get('host')}:{hub.get('port')}")
        for key, value in info.items():
            if key != "kitchen_name":
                out.append(f"    {key}: {orjson.dumps(value).decode()}")
        for key in ("dumplings", "invalid"):
            if key in k:
                out.append(f"    {key}: {k[key]}")
    eaters = status.get("dumpling_eaters") or []
    out.append(f"{len(eaters)} eater(s)")
    for e in eaters:
        info, hub = e.get("info_from_eater") or {}, e.get("info_from_hub") or {}
        out.append(f"- eater {info.get('eater_name')!r} from {hub.get('host')}:{hub.get('port')}")
        for key, value in info.items():
            if key != "eater_name":
                out.append(f"    {key}: {orjson.dumps(value).decode()}")
        for key in ("sent", "queue_depth", "queue_size", "dropped"):
            if key in e:
                out.append(f"    {key}: {e[key]}")
    return "\n".join(out)


class HubDetailsEater(DumplingEater):
    def __init__(self, *, follow: bool = False, out: TextIO | None = None,
                 color: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("chef_filter", [STATUS_CHEF])
        super().__init__(**kwargs)
        self.follow = follow
        #: Bold each kitchen's and eater's first line (0.5's --color).
        self.color = color
        self.out = out or sys.stdout

    async def on_dumpling(self, dumpling: dict[str, Any]) -> None:
        if (dumpling.get("metadata") or {}).get("chef") != STATUS_CHEF:
            return
        text = render_details(dumpling.get("payload") or {})
        # what kitchens and eaters said in their hellos: no escape sequences
        text = terminal_safe_lines(text)
        if self.color:
            text = "\n".join(f"\x1b[1m{line}\x1b[0m" if line.startswith("- ") else line
                             for line in text.split("\n"))
        self.out.write(text + "\n")
        self.out.flush()
        if not self.follow:
            self.stop()
