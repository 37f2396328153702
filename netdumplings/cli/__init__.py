"""Thin command-line shells; the logic lives in the framework and in ``netdumplings.eaters``."""
