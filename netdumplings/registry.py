"""Finding chefs by name: the bundled ones in ``netdumplings.chefs`` and user modules."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from typing import Any, Iterable

from .chef import FRAMEWORK_BASES, ChefLoadError, DumplingChef, chefs_in_module

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
                if (isinstance(obj, type) and issubclass(obj, DumplingChef)
                        and obj not in FRAMEWORK_BASES and obj.__module__ == module.__name__
                        and obj.assignable_to_kitchen):
                    found[name] = obj
        _bundled = dict(sorted(found.items()))
    return _bundled


def load_chefs(modules: Iterable[str] = ()) -> dict[str, type[DumplingChef]]:
    """Chefs available to a kitchen: the bundled ones, then those of ``modules`` (a user
    module's chef overrides a bundled chef of the same name)."""
    chefs = dict(bundled_chefs())
    for spec in modules:
        found = chefs_in_module(spec)
        if not found:
            raise ChefLoadError(f"{spec}: no DumplingChef subclasses found")
        chefs.update(found)
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
