"""The layout of docs/architecture.md holds: stages import down the data path only (the
import-linter contracts in pyproject.toml), no import circle anywhere, each stage's package
says its job and what it may import, and no module passes about 500 lines without saying
why at its top."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["capture", "flows", "kitchen", "wire", "hub", "eater", "compat", "cli"]
#: Lines a module may have before its docstring must say why it is longer.
LONG = 520


@pytest.fixture(scope="module")
def installed_tree(tmp_path_factory) -> Path:
    """The package as the wheel lays it out (chefs/ and eaters/ inside netdumplings/), so
    the import graph sees the bundled chefs and eaters where users import them from."""
    top = tmp_path_factory.mktemp("layout")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "netdumplings", top / "netdumplings", ignore=ignore)
    shutil.copytree(ROOT / "chefs", top / "netdumplings" / "chefs", ignore=ignore)
    shutil.copytree(ROOT / "eaters", top / "netdumplings" / "eaters", ignore=ignore)
    return top


def _run_in(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def _flat(text: str) -> str:
    """lint-imports wraps its report to the terminal's width."""
    return " ".join(text.split())


def test_stages_import_down_the_data_path_only(installed_tree):
    lint = Path(sys.executable).with_name("lint-imports")
    r = _run_in(installed_tree, str(lint), "--no-cache", str(ROOT / "pyproject.toml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout and "KEPT" in r.stdout


def test_the_rule_catches_an_upward_import(installed_tree, tmp_path):
    """The contract is not vacuous: a capture module that imports the hub breaks it."""
    bad = tmp_path / "tree"
    shutil.copytree(installed_tree, bad)
    with open(bad / "netdumplings" / "capture" / "defrag.py", "a") as f:
        f.write("\nfrom ..hub import server  # noqa: E402,F401\n")
    lint = Path(sys.executable).with_name("lint-imports")
    r = _run_in(bad, str(lint), "--no-cache", str(ROOT / "pyproject.toml"))
    assert r.returncode != 0
    assert "netdumplings.capture is not allowed to import netdumplings.hub" in _flat(r.stdout)


def test_the_rule_catches_a_decoder_that_reads_flows(installed_tree, tmp_path):
    """Each chef package's decoder (``netdumplings.chefs.*.decoder``) is held to bytes in,
    events out: one that reaches for the flow table, even through a sibling module, breaks
    the contract."""
    bad = tmp_path / "tree"
    shutil.copytree(installed_tree, bad)
    decoders = sorted((bad / "netdumplings" / "chefs").glob("*/decoder.py"))
    assert decoders, "no chef package has a decoder module"
    decoders[0].with_name("_planted.py").write_text("from netdumplings.flows.table import Flow\n")
    with open(decoders[0], "a") as f:
        f.write("\nfrom . import _planted  # noqa: E402,F401\n")
    lint = Path(sys.executable).with_name("lint-imports")
    r = _run_in(bad, str(lint), "--no-cache", str(ROOT / "pyproject.toml"))
    assert r.returncode != 0
    assert "decoder is not allowed to import netdumplings.flows" in _flat(r.stdout)


CYCLES = """
import grimp, sys
g = grimp.build_graph("netdumplings", exclude_type_checking_imports=True)
index, low, stack, on, found = {}, {}, [], set(), []
sys.setrecursionlimit(20000)
def visit(v):
    index[v] = low[v] = len(index); stack.append(v); on.add(v)
    for w in g.find_modules_directly_imported_by(v):
        if w not in g.modules:
            continue
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            found.append(sorted(comp))
for m in sorted(g.modules):
    if m not in index:
        visit(m)
print(found)
"""


def test_no_import_circle(installed_tree):
    """No two modules import each other, directly or round a longer circle (imports inside
    functions count; imports only for type checking do not)."""
    r = _run_in(installed_tree, sys.executable, "-c", CYCLES)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_says_its_job_and_what_it_may_import(stage):
    doc = ast.get_docstring(ast.parse((ROOT / "netdumplings" / stage / "__init__.py").read_text()))
    assert doc and len(doc.split()) >= 12, stage
    if stage not in ("compat", "cli"):
        assert "May import" in doc, stage


def _modules() -> list[Path]:
    return sorted(p for top in ("netdumplings", "chefs", "eaters")
                  for pattern in ("*.py", "*.js")
                  for p in (ROOT / top).rglob(pattern) if "__pycache__" not in p.parts)


def _head(path: Path, text: str) -> str:
    """What a reader meets first: a Python module's docstring, a script's opening comment."""
    if path.suffix == ".py":
        return ast.get_docstring(ast.parse(text)) or ""
    lines = text.split("\n")
    return "\n".join(line for line in lines[:40] if line.startswith("//"))


def test_long_modules_say_why():
    """A module over ~500 lines (Python, or the dashboard's scripts) is a choice, written
    down where a reader meets it."""
    unexplained = []
    for path in _modules():
        text = path.read_text()
        if text.count("\n") <= LONG:
            continue
        if "Longer than 500 lines" not in _head(path, text):
            unexplained.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert not unexplained, unexplained
