"""``python -m bench hub-plain`` runs end to end (tiny counts; speed is the benchmark's
business, not the test suite's): plain kitchen -> our nd-hub -> 1 and 10 plain eaters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(180)


def test_bench_hub_plain_smoke(tmp_path: Path) -> None:
    out = tmp_path / "plain.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "hub-plain", "--dumplings", "3000",
                           "--rounds", "1", "--only", "ours", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())["hub-plain"]
    rows = {r["eaters"]: r for r in result["rows"]}
    assert rows[1]["sent"] == rows[1]["received_min"] == 3000
    assert rows[10]["sent"] == rows[10]["received_min"] == 1000
    for r in rows.values():
        assert r["hub"] == "ours" and r["out_of_order"] == 0
        assert r["per_eater_dumplings_per_s_min"] > 0 and r["hub_cpu_us_per_dumpling_out"] > 0
    assert "per eater/s" in proc.stdout
