"""Finding chefs by name: the bundled ones in ``netdumplings.chefs`` and user modules."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from typing import Any, Iterable

from .chef import (ChefLoadError, DumplingChef, chefs_in_module, defined_in,
                   hidden_chefs_in_module, is_assignable)

log = logging.getLogger("netdumplings.registry")
_bundled: dict[str, type[DumplingChef]] | None = None


def bundled_chefs() -> dict[str, type[DumplingChef]]:
    """Every chef class in the ``netdumplings.chefs`` package, by class name.

    A bundled module that fails to import (a missing optional dependency) is logged and
    skipped: one broken decoder must not take the others down.
    """
    global _bundled
    if _bundled is None:
        import netdumplings.chefs as pkg

        found: dict[str, type[DumplingChef]] = {}
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.startswith("_"):
                continue
            try:
                module = importlib.import_module(f"{pkg.__name__}.{info.name}")
            except Exception as exc:
                log.warning("bundled chef module %s not available: %s", info.name, exc)
                continue
            for name, obj in vars(module).items():
                # a chef package's chefs are defined in its submodules
                if is_assignable(obj) and defined_in(obj, module.__name__):
                    found[name] = obj
        _bundled = dict(sorted(found.items()))
    return _bundled


def load_chefs(modules: Iterable[str] = ()) -> dict[str, type[DumplingChef]]:
    """Chefs available to a kitchen: the bundled ones, then those of ``modules``.

    A user module's chef replaces a bundled chef of the same name (with a warning). Two
    user modules offering different chefs of the same name is an error: chefs are known
    by class name (in ``--chef``, ``--chef-option`` and every dumpling), so one of them
    would silently not run.
    """
    bundled = bundled_chefs()
    chefs = dict(bundled)
    from_user: dict[str, str] = {}
    for spec in modules:
        found = chefs_in_module(spec)
        if not found:
            hidden = hidden_chefs_in_module(spec)
            if hidden:
                raise ChefLoadError(
                    f"{spec}: no chefs to run: {', '.join(hidden)} set assignable_to_kitchen "
                    f"= False (it hides only the class that sets it, not its subclasses)")
            raise ChefLoadError(f"{spec}: no DumplingChef subclasses found")
        for name, cls in found.items():
            if name in from_user and chefs[name] is not cls:
                raise ChefLoadError(
                    f"chef {name} is defined twice, in {from_user[name]} and in {spec}; "
                    f"chefs are known by class name, so rename one")
            if name in bundled and bundled[name] is not cls and name not in from_user:
                if cls.__module__.startswith("netdumplings.dumplingchefs."):
                    log.info("%s: netdumplings 0.5's %s runs instead of today's", spec, name)
                else:
                    log.warning("%s: chef %s replaces the bundled chef of the same name",
                                spec, name)
            from_user[name] = spec
            chefs[name] = cls
    return chefs


def resolve_chefs(chefs: Iterable[Any], modules: Iterable[str] = ()) -> list[Any]:
    """Turn names into classes (instances and classes pass through)."""
    available: dict[str, type[DumplingChef]] | None = None
    out = []
    for chef in chefs:
        if isinstance(chef, str):
            if available is None:
                available = load_chefs(modules)
            if chef not in available:
                raise ChefLoadError(f"unknown chef {chef!r} (available: {', '.join(available)})")
            out.append(available[chef])
        else:
            out.append(chef)
    return out
