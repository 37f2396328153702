"""Bundled protocol chefs (installed as ``netdumplings.chefs``).

Each protocol has a sans-I/O decoder (fed bytes, returns events; no sockets, scapy or
asyncio) and the thin chef shell that feeds it from the kitchen. A small protocol keeps
both in one module; a big one is a package (``http1/``, ``http2/``, ``zmtp/``...) whose
``decoder`` and its helpers import no framework and are usable on their own, whose ``chef``
is the shell, and whose ``__init__`` re-exports the names users import, so
``netdumplings.chefs.<protocol>`` reads the same either way.
"""
