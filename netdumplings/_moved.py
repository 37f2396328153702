"""The module paths of 1.0.0.dev0's flat layout, still importable.

Before the framework was split by stage (capture, flows, kitchen, wire, hub, eater), its
modules sat side by side: ``netdumplings.chef``, ``netdumplings.sources``... Code written
against them keeps working: importing an old path gives the module at its new path (the
same module object, so classes and state are shared) with a DeprecationWarning naming the
new one. Old paths that became packages (``netdumplings.kitchen``, ``.hub``, ``.eater``,
``.flows``, ``.wire``) re-export their public names themselves.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

#: old module -> new module, both under ``netdumplings.``
MOVED = {
    "sources": "capture.sources", "linktypes": "capture.linktypes", "bpf": "capture.bpf",
    "capformat": "capture.capformat", "packet": "capture.packet", "defrag": "capture.defrag",
    "tunnels": "capture.tunnels", "pcapwriter": "capture.pcapwriter",
    "fanout": "capture.fanout", "ifdrops": "capture.ifdrops",
    "reassembly": "flows.reassembly",
    "chef": "kitchen.chef", "registry": "kitchen.registry", "workers": "kitchen.workers",
    "workerproc": "kitchen.workerproc", "shard": "kitchen.shard",
    "sameness": "kitchen.sameness", "offline": "kitchen.offline",
    "dumpling": "wire.dumpling", "sender": "wire.sender", "logredact": "wire.logredact",
    "hub_admission": "hub.admission", "hub_eaters": "hub.eaters", "hub_frames": "hub.frames",
    "hub_intake": "hub.intake", "hub_queues": "hub.queues", "hub_replay": "hub.replay",
    "hub_status": "hub.status", "backplane": "hub.backplane",
}
_PREFIX = "netdumplings."


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(_PREFIX) or fullname[len(_PREFIX):] not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def exec_module(self, module: ModuleType) -> None:
        new = _PREFIX + MOVED[module.__name__[len(_PREFIX):]]
        warnings.warn(f"{module.__name__} moved to {new}; import it from there",
                      DeprecationWarning, stacklevel=2)
        # The import system takes the module from sys.modules after exec_module, so the
        # old name ends up bound to the real module, not to this empty one.
        sys.modules[module.__name__] = importlib.import_module(new)


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
