"""Bundled protocol chefs (installed as ``netdumplings.chefs``).

Each protocol has a sans-I/O decoder (fed bytes, returns events; no sockets, scapy or
asyncio) and the thin chef shell that feeds it from the kitchen. A big one is a package
(``zmtp/``, ``fluentd/``...): ``decoder.py`` imports nothing of the framework and is usable
on its own, ``chef.py`` is the shell, and the package's ``__init__`` re-exports the names
users import (``from netdumplings.chefs.zmtp import ZmtpChef, ZmtpDecoder``).
"""
