"""The eaters in eaters/examples/ (Node.js, browser, plain Python) against a real hub.

Each test starts nd-hub, starts the example eater, waits until the hub has registered it
(from the hub's own log), replays a capture with a real nd-sniff kitchen, and checks that
the eater printed exactly the dumplings the kitchen made: same count, same sequence numbers,
same payloads as the offline pipeline gives for the same capture.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import DATA, Proc, nd_command

from netdumplings.kitchen.offline import read_dumplings

pytestmark = [pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "eaters" / "examples"
CAPTURE = DATA / "dns-queries.pcap"
CHEF = "DNSLookupChef"
KITCHEN = "examples-kitchen"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run"]


class HubLog:
    """Collects nd-hub's stderr so a test can wait for "eater X connected"."""

    def __init__(self, popen: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(popen.stderr,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def wait_eater(self, name: str, timeout: float = 30.0) -> None:
        pattern = re.compile(rf"eater {re.escape(name)} connected")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(pattern.search(line) for line in list(self.lines)):
                return
            time.sleep(0.05)
        raise AssertionError(f"the hub never saw eater {name}; hub log: {self.lines[-20:]}")


@pytest.fixture
def hub(hub_process):
    """A hub that logs connections (-v) and sends no status dumplings during a test."""
    in_port, out_port, popen = hub_process("-v", status_freq=3600.0)
    return in_port, out_port, HubLog(popen)


def expected_dumplings() -> list[dict[str, Any]]:
    return list(read_dumplings(CAPTURE, [CHEF]))


def replay(in_port: int) -> int:
    """Run a kitchen over the capture into the hub; returns how many dumplings it made."""
    done = subprocess.run(nd_command("nd-sniff") + ["-r", str(CAPTURE), "-c", CHEF, "-n", KITCHEN,
                                                    "--hub", f"127.0.0.1:{in_port}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    made = re.search(r"(\d+) dumplings", done.stderr)
    assert made, done.stderr
    return int(made.group(1))


def check_received(received: list[dict[str, Any]], made: int) -> None:
    want = expected_dumplings()
    assert made == len(want) > 0
    assert len(received) == made, [d["metadata"] for d in received]
    assert [d["metadata"]["sequence"] for d in received] == list(range(1, made + 1))
    assert {d["metadata"]["kitchen"] for d in received} == {KITCHEN}
    assert {d["metadata"]["chef"] for d in received} == {CHEF}
    assert [d["payload"] for d in received] == [d["payload"] for d in want]


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.strip()]


# -- Python ---------------------------------------------------------------------------------

def test_python_eater_is_short() -> None:
    source = (EXAMPLES / "python" / "eater.py").read_text()
    assert len(source.splitlines()) < 20


def test_python_eater(hub, procs) -> None:
    in_port, out_port, log = hub
    count = len(expected_dumplings())
    eater = procs([sys.executable, str(EXAMPLES / "python" / "eater.py"),
                   f"ws://127.0.0.1:{out_port}", str(count)])
    log.wait_eater("python-eater")
    made = replay(in_port)
    assert eater.wait(30) == 0, eater.err[-10:]
    check_received(json_lines(eater.out), made)


# -- Node.js --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node_eater_dir(tmp_path_factory) -> Path:
    """A copy of the Node example with its dependencies installed by `npm ci`."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm are not installed (scripts/test installs them when root)")
    work = tmp_path_factory.mktemp("node-eater")
    for name in ("package.json", "package-lock.json", "eater.js"):
        shutil.copy(EXAMPLES / "node" / name, work / name)
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=work,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        offline = re.search(r"ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNREFUSED|ECONNRESET|network",
                            done.stderr)
        if offline:
            pytest.skip(f"npm ci could not reach the registry: {done.stderr.strip()[-300:]}")
        pytest.fail(f"npm ci failed: {done.stderr[-2000:]}")
    assert (work / "node_modules" / "ws" / "package.json").is_file()
    return work


def test_node_lockfile_matches_package_json() -> None:
    package = json.loads((EXAMPLES / "node" / "package.json").read_text())
    lock = json.loads((EXAMPLES / "node" / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    assert "node_modules/ws" in lock["packages"]


def test_node_eater(hub, procs, node_eater_dir) -> None:
    in_port, out_port, log = hub
    count = len(expected_dumplings())
    eater = procs(["node", "eater.js", f"ws://127.0.0.1:{out_port}", str(count), CHEF],
                  cwd=str(node_eater_dir))
    eater.wait_line("node-eater: connected", timeout=30)  # after the hub's welcome
    log.wait_eater("node-eater")
    made = replay(in_port)
    assert eater.wait(30) == 0, eater.err[-10:]
    check_received(json_lines(eater.out), made)
    assert any(f"after {made} dumplings" in line for line in eater.err), eater.err


def test_node_eater_reports_refusal(hub_process, procs, node_eater_dir) -> None:
    """A hub that wants a token closes with 1008; the eater says so and exits non-zero."""
    in_port, out_port, _ = hub_process("--eater-token", "right-token")
    eater = procs(["node", "eater.js", f"ws://127.0.0.1:{out_port}", "1"],
                  cwd=str(node_eater_dir), env={"ND_EATER_TOKEN": "wrong-token"})
    assert eater.wait(30) == 1
    assert any("closed (1008" in line for line in eater.err), eater.err


# -- browser --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/test installs it when root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def test_browser_eater_is_self_contained() -> None:
    html = (EXAMPLES / "browser" / "eater.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html


def test_browser_eater(hub, browser) -> None:
    in_port, out_port, log = hub
    count = len(expected_dumplings())
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        url = ((EXAMPLES / "browser" / "eater.html").as_uri()
               + f"?hub=ws://127.0.0.1:{out_port}&chef={CHEF}&count={count}&connect=1")
        page.goto(url)
        page.wait_for_function("window.eater && window.eater.connected === true",
                               timeout=30_000)
        assert "connected to" in page.inner_text("#status")
        log.wait_eater("browser-eater")
        made = replay(in_port)
        page.wait_for_function(f"document.querySelectorAll('#dumplings li').length >= {made}",
                               timeout=30_000)
        page.wait_for_function("window.eater.closed !== null", timeout=30_000)
        shown = [json.loads(text) for text in page.locator("#dumplings li pre").all_inner_texts()]
        check_received(shown, made)
        heads = page.locator("#dumplings li .head").all_inner_texts()
        assert all(f"{KITCHEN}/{CHEF}" in head for head in heads), heads
        assert page.evaluate("window.eater.closed") == 1000
        assert f"after {made} dumplings" in page.inner_text("#status")
        assert errors == []
    finally:
        page.close()
