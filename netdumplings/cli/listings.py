"""nd-sniff's two listings: the chefs (-l) and the interfaces (-D)."""

from __future__ import annotations

import inspect
import shutil
import textwrap


def chef_list(available: dict[str, type], modules: list[str]) -> str:
    """``-l``: chef, where it comes from (the module or file as the user named it), and its
    whole description (the docstring's first paragraph), in aligned columns wrapped to the
    terminal."""
    from ..kitchen.chef import chefs_in_module
    origin = {name: spec for spec in modules for name in chefs_in_module(spec)}
    rows = []
    for name, cls in available.items():
        doc = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0]
        text = " ".join(doc.split()) or "(no description: give the class a docstring)"
        if getattr(cls, "opt_in", False):
            text += " Opt-in: runs only when named with -c."
        rows.append((name, origin.get(name, _public_module(cls.__module__)), text))
    w1 = max(len(r[0]) for r in rows + [("CHEF", "", "")])
    w2 = max(len(r[1]) for r in rows + [("", "FROM", "")])
    width = max(shutil.get_terminal_size((100, 24)).columns, w1 + w2 + 30)
    indent = " " * (w1 + w2 + 4)
    out = [f"{'CHEF':{w1}}  {'FROM':{w2}}  DESCRIPTION"]
    for name, where, text in rows:
        out.append(textwrap.fill(text, width, initial_indent=f"{name:{w1}}  {where:{w2}}  ",
                                 subsequent_indent=indent))
    return "\n".join(out)


def _public_module(module: str) -> str:
    """A bundled chef by the path users import it from (``netdumplings.chefs.http1``), not
    the submodule of its package that defines it."""
    if module.startswith("netdumplings.chefs."):
        return ".".join(module.split(".")[:3])
    return module


def list_interfaces() -> list[str]:
    """``-D``: one line per interface, numbered by kernel index like tcpdump -D."""
    import scapy.arch  # noqa: F401  (fills conf.ifaces from the kernel)
    from scapy.config import conf
    conf.ifaces.reload()
    lines = []
    for iface in sorted(conf.ifaces.values(), key=lambda i: i.index):
        flags = str(iface.flags or "").split("+")
        state = ", ".join(word for word, flag in (("Up", "UP"), ("Running", "RUNNING"),
                                                  ("Loopback", "LOOPBACK")) if flag in flags)
        addresses = [a for family in (4, 6) for a in iface.ips.get(family, [])]
        lines.append(f"{iface.index}.{iface.name} [{state or 'Down'}]"
                     + (f" {' '.join(addresses)}" if addresses else ""))
    return lines
