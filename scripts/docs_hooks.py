"""MkDocs hooks (mkdocs.yml ``hooks:``): the docs build takes the nd-web screenshot.

Before the pages are read, scripts/docs_screenshot.py runs nd-hub, nd-web and a replaying
nd-sniff on loopback and photographs the dashboard into docs/img/nd-web.png, so the quick
start shows what the current code draws. Without Chromium or Playwright (or with
ND_DOCS_SCREENSHOT=0, as the docs test sets to keep its build fast) the committed picture
is used and the build says so.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.netdumplings")


def _screenshot_module() -> Any:
    path = Path(__file__).with_name("docs_screenshot.py")
    spec = importlib.util.spec_from_file_location("docs_screenshot", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_pre_build(config: Any, **kwargs: Any) -> None:
    out = Path(config["docs_dir"]) / "img" / "nd-web.png"
    if os.environ.get("ND_DOCS_SCREENSHOT", "1") == "0":
        log.info("nd-web screenshot: ND_DOCS_SCREENSHOT=0, using the committed one")
        return
    shots = _screenshot_module()
    try:
        shots.take(out)
    except shots.Unavailable as exc:
        if not out.is_file():
            raise
        log.info("nd-web screenshot: %s; using the committed one", exc)
        return
    log.info("nd-web screenshot: taken, %s", out)
