"""The dashboard's filter language (eaters/web/filter.js) on its own, without a browser.

The unit tests are JavaScript (tests/eaters/web_js/*.test.mjs: the filter and the exports, run
here with ``node --test``);
the fuzzing is Hypothesis: random expressions are printed with random spacing and
spellings, parsed by the real filter.js in node, evaluated on sample dumplings and compared
with a small reference evaluator written here; random text must parse or fail with a
FilterError that points inside the text, never crash.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


@pytest.mark.parametrize("name, tests", [("filter", 9), ("export", 3)])
def test_unit_tests_in_node(name: str, tests: int) -> None:
    done = subprocess.run([NODE, "--test", str(ROOT / f"tests/eaters/web_js/{name}.test.mjs")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout and f"# pass {tests}" in done.stdout


class Oracle:
    """filter.js in a node process, asked one expression at a time."""

    def __init__(self) -> None:
        self.p = subprocess.Popen([NODE, str(ROOT / "tests/eaters/web_js/filter_oracle.mjs")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  cwd=ROOT)

    def ask(self, text: str, items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        assert self.p.stdin and self.p.stdout
        self.p.stdin.write(json.dumps({"text": text, "items": items or []}) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        assert line, "the node oracle died"
        return json.loads(line)

    def close(self) -> None:
        self.p.kill()
        self.p.wait(5)


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    o = Oracle()
    yield o
    o.close()


# -- a reference evaluator for a small part of the language ---------------------------

CHEFS = ["Http1Chef", "DNSLookupChef", "ARPChef"]
WORDS = CHEFS + ["GET", "POST", "k1", "k2"]


def dumplings() -> list[dict[str, Any]]:
    out = []
    for i, chef in enumerate(CHEFS * 3):
        payload: dict[str, Any] = {}
        if i % 2 == 0:
            payload["status"] = [200, 404, 503][i % 3]
        if i % 3 != 1:
            payload["method"] = ["GET", "POST"][i % 2]
        if i % 4 != 3:
            payload["latency"] = [0.001, 0.05, 0.2][i % 3]
        out.append({"metadata": {"chef": chef, "kitchen": f"k{i % 2 + 1}",
                                 "driver": "packet"}, "payload": payload})
    return out


ITEMS = dumplings()
FIELDS = ["chef", "kitchen", "status", "method", "latency"]


def get(d: dict[str, Any], field: str) -> list[Any]:
    if field in ("chef", "kitchen"):
        return [d["metadata"][field]]
    return [d["payload"][field]] if field in d["payload"] else []


def equal(x: Any, v: tuple[str, Any, str]) -> bool:
    kind, val, raw = v
    if kind == "num" and isinstance(x, (int, float)):
        return x == val
    return isinstance(x, str) and x == str(val)


def ev(node: Any, d: dict[str, Any]) -> bool:
    op = node[0]
    if op == "or":
        return any(ev(a, d) for a in node[1])
    if op == "and":
        return all(ev(a, d) for a in node[1])
    if op == "not":
        return not ev(node[1], d)
    if op == "has":
        return any(x is not None and x is not False for x in get(d, node[1]))
    if op == "in":
        return any(equal(x, v) for x in get(d, node[1]) for v in node[2])
    _, field, cmp, v = node
    xs = get(d, field)
    if not xs:
        return False
    if cmp == "==":
        return any(equal(x, v) for x in xs)
    if cmp == "!=":
        return not any(equal(x, v) for x in xs)
    nums = [x for x in xs if isinstance(x, (int, float))]
    ops = {">": lambda a: a > v[1], ">=": lambda a: a >= v[1], "<": lambda a: a < v[1],
           "<=": lambda a: a <= v[1]}
    return any(ops[cmp](x) for x in nums)


# -- expressions, printed with random spellings -----------------------------------------

numbers = st.one_of(
    st.sampled_from([200, 404, 503, 0, 400, 500]).map(lambda n: ("num", n, str(n))),
    st.sampled_from([("num", 0.05, "50ms"), ("num", 0.001, "1ms"), ("num", 0.2, "200ms"),
                     ("num", 0.1, "0.1"), ("num", 0.05, "50000us")]))
words = st.sampled_from(WORDS).map(lambda w: ("str", w, w))
values = st.one_of(numbers, words)
space = st.sampled_from([" ", "  ", "\t", " \n "])


@st.composite
def leaf(draw: Any) -> tuple[Any, str]:
    field = draw(st.sampled_from(FIELDS))
    kind = draw(st.sampled_from(["cmp", "ord", "in", "has"]))
    sp = draw(space)
    if kind == "has":
        return ("has", field), field
    if kind == "in":
        vs = draw(st.lists(values, min_size=1, max_size=3))
        sep = draw(st.sampled_from([", ", ",", " "]))
        quote = draw(st.booleans())
        text = sep.join(f'"{v[2]}"' if quote and v[0] == "str" else v[2] for v in vs)
        return ("in", field, vs), f"{field}{sp}in{sp}{{{text}}}"
    if kind == "ord":
        v = draw(numbers)
        cmp = draw(st.sampled_from([">", ">=", "<", "<="]))
        return ("cmp", field, cmp, v), f"{field}{draw(st.sampled_from(['', ' ']))}{cmp}{sp}{v[2]}"
    v = draw(values)
    cmp = draw(st.sampled_from(["==", "!="]))
    vt = f'"{v[2]}"' if v[0] == "str" and draw(st.booleans()) else v[2]
    return ("cmp", field, cmp, v), f"{field}{sp}{cmp}{sp}{vt}"


def combine(children: Any) -> Any:
    @st.composite
    def node(draw: Any) -> tuple[Any, str]:
        kind = draw(st.sampled_from(["and", "or", "not"]))
        if kind == "not":
            a, t = draw(children)
            word = draw(st.sampled_from(["not ", "NOT ", "!", "! "]))
            return ("not", a), f"{word}({t})"
        parts = draw(st.lists(children, min_size=2, max_size=3))
        word = draw(st.sampled_from([f" {kind} ", f" {kind.upper()} ",
                                     " && " if kind == "and" else " || "]))
        return (kind, [p[0] for p in parts]), word.join(f"({p[1]})" for p in parts)
    return node()


expressions = st.recursive(leaf(), combine, max_leaves=8)

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(expressions)
def test_fuzz_parser_agrees_with_a_reference_evaluator(oracle: Oracle,
                                                       expr: tuple[Any, str]) -> None:
    tree, text = expr
    got = oracle.ask(text, ITEMS)
    assert got["ok"], (text, got)
    # Printing is stable: parse(format(x)) prints the same again.
    assert got["again"] == got["canon"], text
    assert got["results"] == [ev(tree, d) for d in ITEMS], text
    # The hub's share and the page's share together decide exactly what the whole does.
    assert got["splitResults"] == got["results"], text


@FUZZ
@given(st.lists(st.sampled_from(list('ab =!<>~&|(){},"\'\\.0123456789msin-') +
                                ["and", "or", "not", "in", "status", "ip.addr", " ", "=="]),
                max_size=30).map("".join))
def test_fuzz_any_text_parses_or_says_where_it_is_wrong(oracle: Oracle, text: str) -> None:
    got = oracle.ask(text)
    if not got["ok"]:
        assert got["kind"] == "FilterError", (text, got)
        assert 0 <= got["start"] <= len(text) and got["start"] < got["end"], (text, got)
        assert got["error"]
    else:
        assert got["again"] == got["canon"], text


@FUZZ
@given(st.text(max_size=60))
def test_fuzz_unicode_text_never_crashes(oracle: Oracle, text: str) -> None:
    got = oracle.ask(text)
    assert got["ok"] or got["kind"] == "FilterError", (text, got)
