"""netdumplings 0.5's ``DumplingHub``: today's ``Hub`` with 0.5's defaults and a blocking
``run()``.

0.5 programs start a hub with ``DumplingHub(...).run()`` and expect it to block until
Ctrl-C, to raise ``NetDumplingsError`` when it cannot listen, and to say so in the log.
Everything else (validation, per-eater queues, status dumplings with 0.5's fields) is
today's hub.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..exceptions import NetDumplingsError
from ..hub.server import Hub
from ..wire.messages import IN_PORT, OUT_PORT

log = logging.getLogger("netdumplings.dumplinghub")


class DumplingHub(Hub):
    """A hub on ``address`` taking dumplings from kitchens on ``in_port`` and sending them to
    eaters on ``out_port``, with a ``SystemStatusChef`` dumpling every ``status_freq``
    seconds. Today's hub options (tokens, TLS, queue limits) are accepted as keywords."""

    def __init__(self, address: str = "localhost", in_port: int = IN_PORT,
                 out_port: int = OUT_PORT, status_freq: float = 5, **hub_options: Any) -> None:
        super().__init__(address, in_port, out_port, status_freq, **hub_options)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(address={self.address!r}, in_port={self.in_port!r}, "
                f"out_port={self.out_port!r}, status_freq={self.status_freq!r})")

    def run(self) -> None:
        """Serve until Ctrl-C (then return); ``NetDumplingsError`` if the ports cannot be
        bound."""
        try:
            asyncio.run(self._run())
        except KeyboardInterrupt:
            log.warning("Caught keyboard interrupt; attempting graceful shutdown...")
        log.info("Dumpling hub signing off.  Thanks!")

    async def _run(self) -> None:
        try:
            await self.start()
        except OSError as exc:
            raise NetDumplingsError(f"Cannot instantiate dumpling hub: {exc}") from exc
        log.info("Dumpling hub initiated; waiting for connections")
        log.info("Dumplings in: ws://%s:%s  out: ws://%s:%s", self.address, self.in_port,
                 self.address, self.out_port)
        try:
            await asyncio.Future()
        finally:
            await self.stop()


__all__ = ["DumplingHub"]
