"""MkDocs hooks (mkdocs.yml ``hooks:``): the docs build takes the nd-web screenshot.

After the site is written, scripts/docs_screenshot.py runs nd-hub, nd-web and a replaying
nd-sniff on loopback and photographs the dashboard over the site's img/nd-web.png, so the
quick start shows what the current code draws. The docs folder is left as it is: its
docs/img/nd-web.png is the committed picture that the links point at, and what the site
keeps when Chromium or Playwright is missing (or with ND_DOCS_SCREENSHOT=0, as the docs
test sets to keep its build fast; the screenshot has its own test); the build says which.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.netdumplings")

_taken = False   # `mkdocs serve` rebuilds at every edit: one picture per process is enough


def _screenshot_module() -> Any:
    path = Path(__file__).with_name("docs_screenshot.py")
    spec = importlib.util.spec_from_file_location("docs_screenshot", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_post_build(config: Any, **kwargs: Any) -> None:
    global _taken
    if _taken:
        return
    _taken = True
    if os.environ.get("ND_DOCS_SCREENSHOT", "1") == "0":
        log.info("nd-web screenshot: ND_DOCS_SCREENSHOT=0, the committed one is used")
        return
    shots = _screenshot_module()
    out = Path(config["site_dir"]) / "img" / "nd-web.png"
    try:
        shots.take(out)
    except shots.Unavailable as exc:
        log.info("nd-web screenshot: %s; the committed one is used", exc)
        return
    log.info("nd-web screenshot: taken with the current code, %s", out)
