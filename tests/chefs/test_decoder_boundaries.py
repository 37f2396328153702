"""Every chef package's decoder is sans-I/O: ``decoder.py`` and every module it imports,
followed through the repository, import nothing of the framework (only other chefs'
decoder-side modules), and neither scapy, sockets nor asyncio. The same rule is an
import-linter contract (tests/test_architecture.py); this one names the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import decoder_import_faults

CHEFS = Path(__file__).resolve().parents[2] / "chefs"
PACKAGES = sorted(p.parent.name for p in CHEFS.glob("*/decoder.py"))


def test_every_big_chef_is_a_package_with_a_decoder() -> None:
    assert {"channel_access", "dns", "fluentd", "forward", "grpc", "http1", "http2",
            "msgpack_stream", "zmtp"} <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_the_decoder_imports_no_framework(package: str) -> None:
    reached, faults = decoder_import_faults(f"netdumplings.chefs.{package}.decoder")
    assert faults == []
    assert f"netdumplings.chefs.{package}.decoder" in reached


@pytest.mark.parametrize("package", PACKAGES)
def test_the_check_sees_the_chef_shell_use_the_framework(package: str) -> None:
    """The check can fail: the shell of the same package, which does use the kitchen's chef
    API, is caught."""
    _, faults = decoder_import_faults(f"netdumplings.chefs.{package}.chef")
    assert any("imports netdumplings.kitchen" in f for f in faults), faults
