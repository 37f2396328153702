#!/usr/bin/env python3
"""Take the screenshot of nd-web that the quick start shows (docs/img/nd-web.png).

Runs the real thing on loopback: nd-hub on free ports, nd-web against it, a headless
Chromium (Playwright, Debian's /usr/bin/chromium) on the page, and nd-sniff replaying the
bundled demo capture into the hub; the picture is taken once the dashboard has drawn the
dumplings. The docs build runs this through scripts/docs_hooks.py; without Chromium or
Playwright the committed picture stays (the build says so and goes on).

    python scripts/docs_screenshot.py [OUT.png]
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "img" / "nd-web.png"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 860}


class Unavailable(Exception):
    """No browser to take the picture with."""


def _bin(name: str) -> list[str]:
    exe = Path(sys.executable).parent / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", f"netdumplings.cli.{name[3:]}"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def take(out: Path = DEFAULT_OUT) -> Path:
    """Write the screenshot to ``out``; ``Unavailable`` without Chromium or Playwright."""
    if not os.path.exists(CHROMIUM):
        raise Unavailable(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise Unavailable("playwright is not installed (pip install 'netdumplings[docs]')") \
            from exc
    from netdumplings.cli.demo import DEMO_OPTIONS, demo_capture

    in_port, out_port, web_port = _free_port(), _free_port(), _free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen(_bin("nd-hub") + ["-i", str(in_port), "-o", str(out_port),
                                                "-f", "1", "--metrics-port", "0"], **quiet)]
    try:
        _wait_port(out_port)
        procs.append(subprocess.Popen(_bin("nd-web") + ["--hub", f"127.0.0.1:{out_port}",
                                                        "--port", str(web_port)], **quiet))
        _wait_port(web_port)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-gpu",
                                               "--disable-dev-shm-usage"])
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(f"http://127.0.0.1:{web_port}/")
                page.wait_for_function("() => document.getElementById('conn')"
                                       ".dataset.state === 'connected'", timeout=20_000)
                options = [f"-o{chef}.{k}={v}" for chef, opts in DEMO_OPTIONS.items()
                           for k, v in opts.items()]
                subprocess.run(_bin("nd-sniff") + ["-r", demo_capture(), "-n", "demo", "-p", "1",
                                                   "--hub", f"127.0.0.1:{in_port}",
                                                   "--no-progress", *options],
                               check=True, timeout=120, **quiet)
                time.sleep(2.5)   # a status period or two, and the panels' redraw
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out))
            finally:
                browser.close()
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
    return out


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    try:
        take(out)
    except Unavailable as exc:
        print(f"docs_screenshot: {exc}; no screenshot taken", file=sys.stderr)
        return 1
    print(f"docs_screenshot: wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
