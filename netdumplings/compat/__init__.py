"""netdumplings 0.5's Python API on today's engine.

A program written for netdumplings 0.5 (``from netdumplings import DumplingKitchen,
DumplingHub, DumplingEater, Dumpling, DumplingDriver``) gets these classes: 0.5's
constructors, defaults, attributes, reprs and log messages, each a thin layer over today's
``Kitchen``, ``Hub`` and ``DumplingEater`` (no second implementation of any of them). See
docs/migration.md for what runs unchanged and what differs.

This package's ``__init__`` imports nothing: ``netdumplings.eater`` imports
``compat.dumpling`` for every eater, and the heavier modules load only when used.
"""
