"""netdumplings 0.5's ``DumplingKitchen``: today's ``Kitchen`` with 0.5's constructor.

0.5 code builds a kitchen around a queue, registers chefs and calls the blocking ``run()``;
every dumpling then arrives on the queue as a JSON string. Here the queue is the kitchen's
sink, ``run()`` is today's live capture (``LiveSource``, one packet socket per interface,
the kernel BPF filter) feeding today's kitchen, and chefs are poked on the wall clock every
``chef_poke_interval`` seconds, as 0.5's poker thread did (but on the capture thread, so
chefs still need no locks).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from ..kitchen.chef import FRAMEWORK_BASES, ChefLoadError, DumplingChef, _import_chef_module
from ..kitchen.kitchen import Kitchen

log = logging.getLogger("netdumplings.dumplingkitchen")

#: What 0.5 said about a chef module file it could not import.
NOT_PYTHON = "does not appear to be an importable Python file"


class DumplingKitchen(Kitchen):
    """A kitchen that sniffs ``interface`` (``'all'``: every interface) with the BPF
    ``sniffer_filter`` and puts each dumpling, as JSON text, on ``dumpling_queue`` (anything
    with ``put``: a ``queue.Queue``, a ``multiprocessing.Queue``). ``chef_poke_interval``
    None disables interval pokes."""

    def __init__(self, dumpling_queue: Any, name: str = "default", interface: str = "all",
                 sniffer_filter: str | None = "tcp", chef_poke_interval: float | None = 5,
                 **kitchen_options: Any) -> None:
        self.dumpling_queue = dumpling_queue
        super().__init__(name, sink=self._put_on_queue, poke_interval=chef_poke_interval,
                         interface=interface, bpf_filter=sniffer_filter, **kitchen_options)
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(dumpling_queue={self.dumpling_queue!r}, "
                f"name={self.name!r}, interface={self.interface!r}, "
                f"sniffer_filter={self.filter!r}, "
                f"chef_poke_interval={self.chef_poke_interval!r})")

    def _put_on_queue(self, dumpling: dict[str, Any], data: bytes) -> None:
        self.dumpling_queue.put(data.decode())
        log.debug("%s: put dumpling on queue, %d bytes", self.name, len(data))

    @property
    def _chefs(self) -> list[DumplingChef]:
        """0.5's name for the registered chefs (``chefs`` today)."""
        return self.chefs

    @_chefs.setter
    def _chefs(self, chefs: list[DumplingChef]) -> None:
        self.chefs = list(chefs)
        self._rebuild()

    @property
    def chef_poke_interval(self) -> float | None:
        """Seconds between interval pokes (``poke_interval`` today); None: no pokes."""
        return self.poke_interval

    @chef_poke_interval.setter
    def chef_poke_interval(self, value: float | None) -> None:
        self.poke_interval = value

    def register_chef(self, chef: DumplingChef) -> None:
        """Register a chef: the kitchen calls its handlers from now on."""
        super().register_chef(chef)
        log.debug("%s: received chef registration from %s", self.name, chef.name)

    # -- running ------------------------------------------------------------------------

    def stop(self) -> None:
        """Make a running ``run()`` return (within a poll interval); safe from any thread."""
        self._stop.set()

    def run(self) -> None:
        """Sniff and cook until Ctrl-C or ``stop()``; then the chefs finish (a last poke,
        unless pokes are disabled).

        A capture that cannot start (not root, an unknown interface, a bad filter) is
        logged as an error and ``run()`` returns, as in 0.5."""
        from ..capture.sources import CaptureError, LiveSource

        if self.chef_poke_interval is not None:
            log.info("%s: interval pokes every %s s", self.name, self.chef_poke_interval)
        else:
            log.info("%s: interval pokes disabled", self.name)
        interfaces = None if self.interface in (None, "all", "any") else [self.interface]
        try:
            source = LiveSource(interfaces, self.filter)
        except CaptureError as exc:
            log.error("The sniffer encountered a problem (it might help to run as root if "
                      "you're not already)")
            log.error("Error from the sniffer: %s", exc)
            return
        log.info("%s: Sniffing started", self.name)
        self._stop.clear()
        try:
            self.run_source(source, self._stop.is_set)
        except KeyboardInterrupt:
            log.info("%s: interrupted; stopping", self.name)
        except CaptureError as exc:
            log.error("%s: capture failed: %s", self.name, exc)
        finally:
            source.close()
        if self.chef_poke_interval is None:  # pokes disabled: not even a last one
            pokeable, self.interval_chefs = self.interval_chefs, []
            try:
                self.finish()
            finally:
                self.interval_chefs = pokeable
        else:
            self.finish()
        log.info("%s: Sniffing stopped after %d packets", self.name, self.stats.packets)

    def run_source(self, source: Any, stop: Any = None) -> None:
        """Today's live loop (wall-clock pokes) over ``source``."""
        Kitchen.run(self, source, stop=stop, live=True)

    # -- finding chefs ------------------------------------------------------------------

    @staticmethod
    def get_chefs_in_modules(chef_modules: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """For each module name or ``.py`` file: ``{"chef_classes": [names],
        "import_error": False or why it could not be imported, "is_py_file": bool}``.

        As in 0.5, every ``DumplingChef`` subclass the module holds is listed, including
        those that set ``assignable_to_kitchen = False`` (``nd-sniff`` leaves those out)."""
        info: dict[str, dict[str, Any]] = {}
        for spec in chef_modules or []:
            entry: dict[str, Any] = {"import_error": False, "chef_classes": [],
                                     "is_py_file": os.path.isfile(spec)}
            info[spec] = entry
            try:
                module = _import_chef_module(spec)
            except ChefLoadError as exc:
                cause = exc.__cause__
                if entry["is_py_file"] and not spec.endswith(".py") and cause is None:
                    entry["import_error"] = NOT_PYTHON
                elif isinstance(cause, ImportError):
                    entry["import_error"] = str(cause)
                else:
                    entry["import_error"] = str(cause or exc)
                continue
            for name, obj in sorted(vars(module).items()):
                if (isinstance(obj, type) and issubclass(obj, DumplingChef)
                        and obj not in FRAMEWORK_BASES):
                    entry["chef_classes"].append(name)
        return info


__all__ = ["DumplingKitchen"]
