"""Defines no chef of its own: it re-exports a bundled one, which is then its chef."""

from netdumplings.chefs.dns import DNSLookupChef  # noqa: F401
