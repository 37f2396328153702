"""netdumplings 0.5's ``Dumpling`` and ``DumplingDriver`` (defined with the wire, since every
eater receives its dumplings as ``DumplingDict``)."""

from ..wire.dumpling05 import Dumpling, DumplingDict, DumplingDriver

__all__ = ["Dumpling", "DumplingDict", "DumplingDriver"]
