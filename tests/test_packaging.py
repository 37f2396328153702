"""The package installs as a normal wheel: chefs and eaters live under netdumplings.*, the
bundled data ships, and nothing generic ('chefs', 'eaters') lands at the top level."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", str(ROOT), "-w", str(out)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:  # no setuptools in the venv: let pip build in isolation
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT),
                            "-w", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (whl,) = out.glob("netdumplings-*.whl")
    return whl


def test_wheel_layout(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"netdumplings", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1]
                    + ".dist-info"}
    for needed in ("netdumplings/chefs/zmtp.py", "netdumplings/chefs/http2.py",
                   "netdumplings/eaters/print.py", "netdumplings/eaters/web/index.html",
                   "netdumplings/data/demo.pcap", "netdumplings/cli/sniff.py"):
        assert needed in names, needed
    # every chef package (chefs/<proto>/, decoder and shell apart) ships with all its modules
    for module in sorted((ROOT / "chefs").glob("*/*.py")):
        assert f"netdumplings/chefs/{module.parent.name}/{module.name}" in names, module
    entry_points = zipfile.ZipFile(wheel).read(
        [n for n in names if n.endswith("entry_points.txt")][0]).decode()
    for script in ("nd-sniff", "nd-hub", "nd-print", "nd-hubstatus", "nd-hubdetails"):
        assert f"{script} = netdumplings.cli." in entry_points


def test_installed_wheel_runs_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    code = ("import netdumplings, netdumplings.chefs.fluentd, netdumplings.eaters.print;"
            "from netdumplings.registry import bundled_chefs;"
            "print(netdumplings.__file__); print(len(bundled_chefs()))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    path, count = r.stdout.split()
    assert path.startswith(str(target)) and int(count) >= 10
    r = subprocess.run([sys.executable, "-m", "netdumplings.cli.demo", "--no-payload",
                        "-c", "DNSLookupChef"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "printer received 7" in r.stderr


def test_wheel_has_the_05_api(wheel, tmp_path):
    """netdumplings 0.5's names (netdumplings.compat, .exceptions, .dumplingchefs) ship and
    import from the installed wheel."""
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("netdumplings/compat/kitchen.py", "netdumplings/exceptions.py",
                   "netdumplings/dumplingchefs/dnslookupchef.py"):
        assert needed in names, needed
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    code = ("from netdumplings import DumplingKitchen, DumplingHub, DumplingEater, Dumpling;"
            "from netdumplings.dumplingchefs import ARPChef, DNSLookupChef, PacketCountChef;"
            "import netdumplings; print(netdumplings.__file__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(target)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(str(target))
