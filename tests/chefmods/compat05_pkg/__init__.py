"""A 0.5-style chef package: chefs defined in submodules and imported here, beside a class
that is not a chef (for DumplingKitchen.get_chefs_in_modules)."""

from .first import FirstCompatChef
from .second import HiddenCompatChef, SecondCompatChef


class NotAChef:
    pass


__all__ = ["FirstCompatChef", "HiddenCompatChef", "NotAChef", "SecondCompatChef"]
