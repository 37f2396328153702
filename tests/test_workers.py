"""nd-sniff --workers N: the same dumplings as one kitchen, merged totals, clean ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from netdumplings.kitchen import Kitchen
from netdumplings.registry import bundled_chefs
from netdumplings.sources import PcapSource
from netdumplings.workers import ShardedKitchen, comparable, shard_mode

SHARED = Path(__file__).resolve().parents[2] / "shared" / "captures"
if not SHARED.exists():
    SHARED = Path("/work/shared/captures")
CAPTURES = sorted(p for p in list(SHARED.glob("*.pcap")) + list(SHARED.glob("foreign/*"))
                  if p.suffix in (".pcap", ".pcapng", ".cap"))
ALL_CHEFS = list(bundled_chefs().values())


def cook(path: Path, workers: int, chefs: list[type] = ALL_CHEFS,
         poke: float | None = 5.0) -> tuple[list[dict[str, Any]], Any]:
    out: list[dict[str, Any]] = []
    sink = lambda d, b: out.append(orjson.loads(b))  # noqa: E731
    if workers == 1:
        kitchen: Any = Kitchen("w", chefs, sink=sink, poke_interval=poke)
    else:
        kitchen = ShardedKitchen(workers, "w", chefs, sink=sink, poke_interval=poke)
        kitchen.start()
    src = PcapSource(path)
    try:
        kitchen.run(src)
    finally:
        src.close()
    kitchen.finish()
    return out, kitchen


@pytest.mark.skipif(not CAPTURES, reason="shared captures not found")
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_same_dumplings_as_one_worker(path: Path) -> None:
    one, k1 = cook(path, 1)
    three, k3 = cook(path, 3)
    assert not k3.died
    assert k3.stats.packets == k1.stats.packets
    assert len(three) == len(one)
    assert comparable(three) == comparable(one)
    # one sequence to the outside, without gaps
    assert [d["metadata"]["sequence"] for d in three] == list(range(1, len(three) + 1))
