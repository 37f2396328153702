"""The documentation site: it builds with --strict, its generated pages are current, and every
code sample in it runs.

Code blocks in docs/**/*.md are marked by an HTML comment on the line before the fence:

``<!-- run -->``
    a ```python block is run with this venv's python, a ```console block with bash
    (lines starting ``$ ``; the venv's bin first on PATH; ``set -eo pipefail``, so a command
    that fails inside a pipe, e.g. because ``head`` closed its output, fails the sample),
    both from the repository root; a traceback on stderr fails it too.
``<!-- run: hub CAPTURE -->``
    the same, while a real nd-hub runs and an nd-sniff kitchen replays CAPTURE into it once
    the sample's eater is connected; the default ports 11347/11348 in the sample are
    replaced by the test hub's.
``<!-- run file: PATH -->``
    the block must be PATH's exact content, and ``python PATH`` is run.
``<!-- file: PATH -->``
    the block must be PATH's exact content (files run by other tests, e.g. test_examples).
``<!-- no-run: why -->``
    a python block that cannot run here (never needed so far).
``<!-- output -->``
    on a ```text block right after a run block: the run's stdout, exactly.

Every ```python block must carry one of these markers, so no sample can silently stop
being checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import VENV_BIN, nd_command

pytestmark = [pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARKER = re.compile(r"^<!--\s*(run: hub|run file:|run|file:|no-run:|output)\s*(.*?)\s*-->$")
FENCE = re.compile(r"^(```+)\s*([\w+-]*)\s*$")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    marker: str | None = None
    arg: str = ""
    output: str | None = None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(DOCS).as_posix()}:{self.line}"


def parse_blocks(page: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    pending: tuple[str, str] | None = None
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            ticks, lang = fence.groups()
            start = i
            i += 1
            body = []
            while i < len(lines) and lines[i].rstrip() != ticks:
                body.append(lines[i])
                i += 1
            code = "\n".join(body) + "\n"
            marker, arg = pending if pending else (None, "")
            if marker == "output":
                assert blocks and blocks[-1].marker and blocks[-1].marker.startswith("run"), \
                    f"{page}:{start + 1}: an output block must follow a run block"
                blocks[-1].output = code
            else:
                blocks.append(Block(page, start + 1, lang, code, marker, arg))
            pending = None
        elif line.strip():
            found = MARKER.match(line.strip())
            pending = (found.group(1), found.group(2)) if found else None
        i += 1
    return blocks


def all_blocks() -> list[Block]:
    return [b for page in sorted(DOCS.rglob("*.md")) for b in parse_blocks(page)]


BLOCKS = all_blocks()
RUN = [b for b in BLOCKS if b.marker in ("run", "run file:")]
RUN_HUB = [b for b in BLOCKS if b.marker == "run: hub"]
FILES = [b for b in BLOCKS if b.marker in ("file:", "run file:")]


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1", "TZ": os.environ.get("TZ", "UTC")}


def command(block: Block, tmp_path: Path, code: str | None = None) -> list[str]:
    code = block.code if code is None else code
    if block.marker == "run file:":
        return [sys.executable, str(ROOT / block.arg)]
    if block.lang == "python":
        script = tmp_path / "sample.py"
        script.write_text(code)
        return [sys.executable, str(script)]
    if block.lang in ("console", "sh", "bash"):
        lines = [ln[2:] for ln in code.splitlines() if ln.startswith("$ ")]
        assert lines, f"{block.id}: a console block runs its '$ ' lines and has none"
        return ["bash", "-c", "set -eo pipefail\n" + "\n".join(lines)]
    raise AssertionError(f"{block.id}: cannot run a {block.lang!r} block")


def check_output(block: Block, stdout: str) -> None:
    if block.output is not None:
        got = "\n".join(line.rstrip() for line in stdout.rstrip("\n").splitlines())
        want = "\n".join(line.rstrip() for line in block.output.rstrip("\n").splitlines())
        assert got == want, f"{block.id}: output differs from the page"


# -- the samples ------------------------------------------------------------------------------

def test_samples_found() -> None:
    assert len(RUN) >= 8 and len(RUN_HUB) >= 3 and len(FILES) >= 4
    assert sum(b.output is not None for b in RUN + RUN_HUB) >= 8


def test_every_python_block_is_checked() -> None:
    unmarked = [b.id for b in BLOCKS if b.lang == "python" and b.marker is None]
    assert unmarked == [], f"python blocks with no run/file/no-run marker: {unmarked}"
    bad_console = [b.id for b in BLOCKS if b.lang == "console" and b.marker != "run"]
    assert bad_console == [], f"console blocks that do not run: {bad_console}"


@pytest.mark.parametrize("block", FILES, ids=lambda b: b.id)
def test_included_file_is_current(block: Block) -> None:
    path = ROOT / block.arg
    assert path.is_file(), f"{block.id}: no such file {block.arg}"
    assert block.code == path.read_text(encoding="utf-8"), \
        f"{block.id}: the page's copy of {block.arg} differs from the file"


@pytest.mark.parametrize("block", RUN, ids=lambda b: b.id)
def test_sample_runs(block: Block, tmp_path: Path) -> None:
    done = subprocess.run(command(block, tmp_path), cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"{block.id} failed:\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, \
        f"{block.id} printed a traceback:\n{done.stderr[-3000:]}"
    check_output(block, done.stdout)


class HubLog:
    def __init__(self, popen: Any) -> None:
        self.lines: list[str] = []
        threading.Thread(target=self._pump, args=(popen.stderr,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def eaters_connected(self) -> int:
        return sum(1 for line in list(self.lines) if re.search(r"eater \S+ connected", line))


@pytest.mark.parametrize("block", RUN_HUB, ids=lambda b: b.id)
def test_sample_runs_against_hub(block: Block, tmp_path: Path, hub_process, procs) -> None:
    capture = ROOT / block.arg
    assert capture.is_file(), f"{block.id}: no capture {block.arg}"
    in_port, out_port, popen = hub_process("-v", status_freq=3600.0)
    log = HubLog(popen)
    code = block.code.replace("11348", str(out_port)).replace("11347", str(in_port))
    sample = procs(command(block, tmp_path, code), cwd=str(ROOT), env=env())
    deadline = time.monotonic() + 30
    while log.eaters_connected() < 1 and time.monotonic() < deadline:
        assert sample.p.poll() is None, f"{block.id} exited early: {sample.err[-20:]}"
        time.sleep(0.05)
    assert log.eaters_connected() >= 1, f"{block.id}: no eater reached the hub"
    kitchen = subprocess.run(nd_command("nd-sniff") + ["-r", str(capture), "--hub",
                                                       f"127.0.0.1:{in_port}"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert kitchen.returncode == 0, kitchen.stderr
    rc = sample.wait(60)
    assert rc == 0, f"{block.id} failed:\n" + "\n".join(sample.err[-30:])
    check_output(block, "\n".join(sample.out))


# -- the site -----------------------------------------------------------------------------------

def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.skipif(sys.version_info[:2] != (3, 11),
                    reason="docs/cli is --help as Python 3.11's argparse (CI's) prints it; "
                           "3.13's argparse words and wraps the same options differently")
def test_cli_reference_is_current() -> None:
    done = run_script("scripts/gen_cli_docs.py", "--check")
    assert done.returncode == 0, done.stderr


def test_chef_pages_are_current() -> None:
    done = run_script("scripts/gen_chef_docs.py", "--check")
    assert done.returncode == 0, done.stderr


def test_cli_reference_covers_every_command() -> None:
    import importlib.util
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, target in scripts.items():
        if importlib.util.find_spec(target.split(":")[0]) is not None:
            page = DOCS / "cli" / f"{name}.md"
            assert page.is_file(), f"no reference page for {name}"
            assert f"usage: {name}" in page.read_text()


def test_schema_is_current() -> None:
    done = run_script("-m", "netdumplings.wire.dumpling")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads((DOCS / "dumpling.schema.json").read_text())


def test_close_codes_documented() -> None:
    from netdumplings.wire import messages as wire

    page = (DOCS / "protocol.md").read_text()
    codes = {k: v for k, v in vars(wire).items() if k.startswith("CLOSE_") and isinstance(v, int)}
    assert codes
    for name, code in codes.items():
        assert re.search(rf"^\| {code} \| `{name}` \|", page, re.M), \
            f"protocol.md does not list {name} = {code}"
        reason = wire.CLOSE_REASONS.get(code)
        if reason:
            assert f"| {reason} |" in page, f"protocol.md: reason for {code} is not {reason!r}"


def test_one_wire_protocol_page() -> None:
    """docs/protocol.md is the wire protocol; nothing links to the page it replaced."""
    assert not (DOCS / "wire-protocol.md").exists()
    for page in [*DOCS.rglob("*.md"), ROOT / "README.md", ROOT / "mkdocs.yml"]:
        assert "wire-protocol" not in page.read_text(encoding="utf-8"), page


def test_docs_build_takes_the_nd_web_screenshot(tmp_path: Path, monkeypatch) -> None:
    """The docs build's hook (scripts/docs_hooks.py, as mkdocs calls it after writing the
    site) runs scripts/docs_screenshot.py: a real hub, nd-web and a replay, photographed by
    Chromium into the site; the picture shows the dashboard with dumplings."""
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("Debian's chromium is not installed")
    pytest.importorskip("playwright.sync_api")
    import importlib.util
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts" / "docs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    monkeypatch.delenv("ND_DOCS_SCREENSHOT", raising=False)
    hooks.on_post_build({"site_dir": str(tmp_path)})
    out = tmp_path / "img" / "nd-web.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 860)
    assert len(data) > 40_000   # a drawn dashboard, not a blank page (those are ~5 KB)


def test_diagram_is_plain_svg() -> None:
    svg = (DOCS / "img" / "pipeline.svg").read_text()
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert not re.search(r"(href|src)\s*=\s*\"https?:", svg)
    assert "<script" not in svg


def test_site_builds_strict(tmp_path: Path) -> None:
    """mkdocs build --strict on a copy whose generated pages are regenerated from the code:
    the site is built from what the commands and chefs do now."""
    pytest.importorskip("mkdocs", reason="mkdocs is in the test extras")
    work = tmp_path / "src"
    shutil.copytree(DOCS, work / "docs")
    shutil.copy(ROOT / "mkdocs.yml", work / "mkdocs.yml")
    (work / "scripts").mkdir()
    for script in ("docs_hooks.py", "docs_screenshot.py"):
        shutil.copy(ROOT / "scripts" / script, work / "scripts" / script)
    for script, sub in (("gen_cli_docs.py", "cli"), ("gen_chef_docs.py", "chefs")):
        done = run_script(f"scripts/{script}", "--out", str(work / "docs" / sub))
        assert done.returncode == 0, done.stderr
    site = tmp_path / "site"
    # the screenshot has its own test (below): here the committed one is used
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                           "-f", str(work / "mkdocs.yml"), "-d", str(site)],
                          capture_output=True, text=True, timeout=300,
                          env={**env(), "ND_DOCS_SCREENSHOT": "0", "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    for page in ("index.html", "quickstart.html", "concepts.html", "protocol.html",
                 "guide/packet-chef.html", "guide/stream-chef.html", "guide/python-eater.html",
                 "guide/other-languages.html", "cli/nd-sniff.html", "chefs/ZmtpChef.html",
                 "deployment.html", "deployment-nats.html",
                 "performance.html", "dumpling.schema.json", "img/pipeline.svg"):
        assert (site / page).is_file(), f"{page} missing from the built site"
    # Nothing is loaded from elsewhere: the site works offline.
    for html in site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        external = re.findall(r"<(?:script|link|img)[^>]+(?:src|href)=\"(https?:)?//[^\"]+",
                              text)
        assert external == [], f"{html.relative_to(site)} loads {external}"
    assert "DNSLookupChef" in (site / "chefs" / "DNSLookupChef.html").read_text()
    # Page titles read as names: a command is its name, never "Nd web" made from the file.
    titles = {html.relative_to(site).as_posix():
              re.search(r"<title>(.*?)</title>", html.read_text(encoding="utf-8")).group(1)
              for html in site.rglob("*.html")}
    for command in ("nd-sniff", "nd-web", "nd-hub", "nd-print", "nd-hubstatus"):
        assert titles[f"cli/{command}.html"].startswith(f"{command} "), titles
    assert titles["protocol.html"].startswith("Wire protocol")
    assert not [p for p, title in titles.items() if re.match(r"(Nd|Cli|Chefs) ", title)]
    # Material: highlighted code with a copy button; the screenshot is in the quick start.
    quick = (site / "quickstart.html").read_text(encoding="utf-8")
    assert "content.code.copy" in quick and 'class="highlight"' in quick
    assert 'src="img/nd-web.png"' in quick and (site / "img" / "nd-web.png").is_file()
