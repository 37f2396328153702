"""netdumplings 0.5's ``DumplingEater``: today's eater with 0.5's defaults, logger and
default handlers.

The top-level ``netdumplings.DumplingEater`` is this class; ``netdumplings.eater.DumplingEater``
is today's (quiet default handlers, hub 127.0.0.1). Both hand ``on_dumpling`` a
``DumplingDict``: ``dumpling.payload`` (0.5) and ``dumpling["payload"]`` (today) both work.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from ..eater.client import DumplingEater as _Eater
from ..wire.messages import OUT_PORT


def _handler_repr(handler: Any) -> str:
    # 0.5 shows handlers by name: a bound method's repr would include the eater's repr.
    return f"<callable: {getattr(handler, '__name__', type(handler).__name__)}>" \
        if callable(handler) else repr(handler)


class DumplingEater(_Eater):
    """Connects to the hub at ``hub`` (``host:port``) as ``name`` and calls the async
    handlers: ``on_connect(hub_uri, websocket)``, ``on_dumpling(dumpling)`` for each
    dumpling of the chefs in ``chef_filter`` (None: all), ``on_connection_lost(exc)``.
    Handlers not given (nor overridden in a subclass) log a warning, as in 0.5. Today's
    eater options (``reconnect``, ``token``, ``kitchen_filter`` ...) are accepted as
    keywords."""

    def __init__(self, name: str = "nameless_eater", hub: str = f"localhost:{OUT_PORT}", *,
                 chef_filter: list[str] | None = None, on_connect: Callable | None = None,
                 on_dumpling: Callable | None = None,
                 on_connection_lost: Callable | None = None, **eater_options: Any) -> None:
        super().__init__(name, hub, chef_filter=chef_filter, on_connect=on_connect,
                         on_dumpling=on_dumpling, on_connection_lost=on_connection_lost,
                         **eater_options)
        self._was_connected = False
        self.logger = logging.getLogger(f"netdumplings.dumplingeater.{self.name}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, hub={self.hub!r}, "
                f"chef_filter={self.chef_filter!r}, "
                f"on_connect={_handler_repr(self.on_connect)}, "
                f"on_dumpling={_handler_repr(self.on_dumpling)}, "
                f"on_connection_lost={_handler_repr(self.on_connection_lost)})")

    def hello(self) -> dict[str, Any]:
        # Sent once per connection, right after it opens: where 0.5 logged "Connected".
        self._was_connected = True
        self.logger.info("%s: Connected to dumpling hub at %s", self.name, self.hub_ws)
        return super().hello()

    # -- 0.5's default handlers: they say that nothing handles the event ----------------

    async def on_connect(self, websocket_uri: str, websocket_obj: Any) -> None:
        self.logger.warning(
            "%s: No on_connect handler specified; ignoring connection.", self.name)

    async def on_dumpling(self, dumpling: Any) -> None:
        self.logger.warning(
            "%s: No on_dumpling handler specified; ignoring dumpling.", self.name)

    async def on_connection_lost(self, e: BaseException) -> None:
        self.logger.warning("%s: No on_connection_lost handler specified; ignoring "
                            "connection loss.", self.name)

    # -- running ----------------------------------------------------------------------------

    def run(self, dumpling_count: int | None = None) -> None:
        """Eat until ``dumpling_count`` dumplings (None: until the hub goes away or Ctrl-C).

        As in 0.5 this does not raise: a hub that cannot be reached is logged as warnings,
        a non-callable ``on_dumpling`` as an error."""
        self.logger.info("%s: Running dumpling eater", self.name)
        if not callable(self.on_dumpling):
            self.logger.error("%s: on_dumpling handler is not callable", self.name)
            return
        self.logger.debug("%s: Looking for dumpling hub at %s", self.name, self.hub_ws)
        self.logger.debug("%s: Chefs: %s", self.name,
                          ", ".join(self.chef_filter) if self.chef_filter else "all")
        try:
            super().run(dumpling_count)  # returns quietly on Ctrl-C
        except OSError as exc:  # HubUnavailable, HubRefused
            self.logger.warning("%s: There was a problem with the dumpling hub connection. "
                                "Is nd-hub available?", self.name)
            self.logger.warning("%s: %s", self.name, exc)
        finally:
            if self._was_connected:
                self.logger.warning("%s: Done eating dumplings.", self.name)


__all__ = ["DumplingEater"]
