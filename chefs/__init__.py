"""Bundled protocol chefs (installed as ``netdumplings.chefs``).

Each protocol has one module holding a sans-I/O decoder (fed bytes, returns events; no
sockets, scapy or asyncio) and the thin chef shell that feeds it from the kitchen.
"""
