"""The suite leaves no process behind: conftest's session-end check finds every process a
test started that is still running (orphans included), fails the session and ends them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import SESSION_ENV, processes_marked

TESTS = Path(__file__).resolve().parent


def test_check_finds_a_detached_process_and_only_marked_ones():
    mark = os.environ[SESSION_ENV]
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             start_new_session=True)
    unmarked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                env={k: v for k, v in os.environ.items() if k != SESSION_ENV})
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = [pid for pid, _ in processes_marked(mark)]
            if stray.pid in pids:
                break
            time.sleep(0.05)
        assert stray.pid in pids and unmarked.pid not in pids
        assert os.getpid() not in pids
    finally:
        for p in (stray, unmarked):
            p.kill()
            p.wait(5)
    assert stray.pid not in [pid for pid, _ in processes_marked(mark)]


def test_a_session_that_leaves_a_process_fails(tmp_path):
    """A whole pytest session (with this suite's conftest as its plugin) whose one test
    passes but leaves an orphan behind: the session fails, names it and kills it."""
    (tmp_path / "test_leaves.py").write_text(textwrap.dedent(f"""
        import subprocess, sys
        def test_passes_but_leaves_a_child():
            # double fork: the grandchild is nobody's child once the child exits
            subprocess.run([sys.executable, "-c",
                            "import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
                            "'import time; print(1, flush=True); time.sleep(120)'], "
                            "start_new_session=True)"], check=True)
    """))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-c",
                           os.devnull, "--rootdir", str(tmp_path), "-p", "no:cacheprovider",
                           str(tmp_path / "test_leaves.py")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(TESTS)})
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 passed" in out and "processes left behind" in out, out
    assert "time.sleep(120)" in out
    # and it was ended: no process of that session remains
    marks = [line for line in out.splitlines() if "pid " in line]
    pid = int(marks[0].split("pid ")[1].split(":")[0])
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{pid}") or \
        open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
