"""Shared fixtures: paths to test captures, live capture on lo, free ports, a running hub."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from netdumplings.wire.dumpling import decode
from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.kitchen.registry import resolve_chefs
from netdumplings.capture.sources import LiveSource, PcapSource

# -- no process outlives the suite ---------------------------------------------------------
# Every process the tests start inherits this mark in its environment (tests pass
# {**os.environ, ...}), orphans included: at the end of the session any process that still
# carries it was left behind by a test. The session then fails, naming them, and they are
# ended so they do not linger on the machine either. (caproto's clients used to leave a
# caproto-repeater running after every run.)
SESSION_ENV = "ND_TEST_SESSION"
os.environ[SESSION_ENV] = f"{os.getpid()}-{time.time_ns()}"


def processes_marked(mark: str) -> list[tuple[int, str]]:
    """(pid, command line) of live processes whose environment holds ND_TEST_SESSION=mark,
    except this process and its ancestors (a pytest started by a test sets its own)."""
    skip = {os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in skip:
        skip.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    needle = f"{SESSION_ENV}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    continue  # exited, not yet reaped
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        found.append((int(entry), cmd))
    return found


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if not os.path.isdir("/proc"):
        return
    mark = os.environ[SESSION_ENV]
    deadline = time.monotonic() + 5.0   # fixtures' terminate() may still be taking effect
    strays = processes_marked(mark)
    while strays and time.monotonic() < deadline:
        time.sleep(0.1)
        strays = processes_marked(mark)
    if not strays:
        return
    import signal
    for pid, _ in strays:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    lines = [f"  pid {pid}: {cmd[:200]}" for pid, cmd in strays]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    text = (f"{len(strays)} process(es) started by the tests outlived them (now killed):\n"
            + "\n".join(lines))
    if reporter is not None:
        reporter.write_sep("=", "processes left behind", red=True)
        reporter.write_line(text)
    else:
        print(text, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "captures"
VENV_BIN = Path(sys.executable).parent


def data_file(name: str) -> Path:
    return DATA / name


def expected(name: str) -> dict[str, Any]:
    """The ground truth beside a test capture (``NAME.pcap`` -> ``NAME.expected.json``)."""
    stem = name.rsplit(".", 1)[0]
    with open(DATA / f"{stem}.expected.json") as fh:
        return json.load(fh)



# -- for testing a sans-I/O decoder on its own ------------------------------------------------


def tcp_streams(name: str, server_port: int) -> dict[str, list[tuple[bool, bytes, float]]]:
    """Each TCP connection to ``server_port`` in ``tests/data/NAME`` as its payloads in capture
    order, ``(to_server, bytes, capture time)``, keyed by the client's ``ip:port`` (as the
    ``.expected.json`` files name connections); from ``l4_payloads``, so no scapy and no
    kitchen. A segment seen twice (same direction and sequence number) is kept once."""
    conns: dict[str, list[tuple[bool, bytes, float]]] = {}
    seen: set[tuple[str, bool, int | None]] = set()
    for p in l4_payloads(DATA / name, empty=True):
        if p.transport != "tcp" or str(server_port) not in (p.src.rsplit(":", 1)[1],
                                                            p.dst.rsplit(":", 1)[1]):
            continue
        to_server = p.dst.rsplit(":", 1)[1] == str(server_port)
        client = p.src if to_server else p.dst
        conns.setdefault(client, [])
        if not p.data or (client, to_server, p.seq) in seen:
            continue
        seen.add((client, to_server, p.seq))
        conns[client].append((to_server, p.data, p.time))
    return conns


#: What no decoder may reach, directly or through the modules it imports (issue 24: a
#: decoder is usable on its own, as h11 is).
DECODER_FORBIDDEN = ("scapy", "socket", "asyncio")


def decoder_import_faults(module: str) -> tuple[set[str], list[str]]:
    """Follow the imports of a bundled chef's decoder module (say
    ``netdumplings.chefs.zmtp.decoder``) through the repository's modules, parsed with
    ``ast`` (nothing is imported).

    Returns (the repository modules reached, faults): a fault is any import of a framework
    module (``netdumplings.*`` outside ``netdumplings.chefs``) or of scapy, socket or asyncio,
    named with the file and line that makes it. Third-party protocol libraries are fine."""
    import ast
    root = Path(__file__).resolve().parents[1]

    def source(mod: str) -> Path | None:
        parts = mod.split(".")
        if parts[:2] == ["netdumplings", "chefs"]:
            base = root / "chefs" / Path(*parts[2:]) if parts[2:] else root / "chefs"
        elif parts[0] == "netdumplings":
            base = root.joinpath(*parts)
        else:
            return None
        for path in (base / "__init__.py", base.with_suffix(".py")):
            if path.is_file():
                return path
        return None

    reached: set[str] = set()
    faults: list[str] = []
    todo = [module]
    while todo:
        mod = todo.pop()
        path = source(mod)
        if mod in reached or path is None:
            continue
        reached.add(mod)
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                if node.level:
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                # ``from pkg import name``: name may be a submodule; both are followed
                targets = [base] + [f"{base}.{a.name}" for a in node.names
                                    if source(f"{base}.{a.name}") is not None]
            else:
                continue
            for target in targets:
                framework = target == "netdumplings" or (
                    target.startswith("netdumplings.")
                    and not target.startswith("netdumplings.chefs"))
                if framework or target.split(".")[0] in DECODER_FORBIDDEN:
                    faults.append(f"{path.relative_to(root)}:{node.lineno} imports {target}")
                elif source(target) is not None:
                    todo.append(target)
    return reached, faults


_ports_given: set[int] = set()


def write_pcap(path: Path, linktype: int, frames: list[bytes],
               times: list[float] | None = None) -> Path:
    """A little-endian microsecond pcap of ``frames`` with link type ``linktype``; frame i
    at ``times[i]`` (default: one second apart from 1,700,000,000)."""
    import struct
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for i, data in enumerate(frames):
            ts = times[i] if times is not None else 1_700_000_000 + i
            fh.write(struct.pack("<IIII", int(ts), int(ts % 1 * 1e6), len(data), len(data)))
            fh.write(data)
    return path


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free now and not given out before in this run: the kernel may hand the same
    ephemeral port to two binds in a row once the first socket is closed, and a hub given
    one port for both --in-port and --out-port cannot start (seen once in CI)."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("no unused free port found")


@contextlib.contextmanager
def http_server(handler: type[Any]) -> Iterator[int]:
    """Python's http.server (``handler``: a BaseHTTPRequestHandler) on a free loopback port,
    in a thread -> the port."""
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def can_capture() -> bool:
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except (PermissionError, AttributeError, OSError):
        return False
    s.close()
    return True


needs_capture = pytest.mark.skipif(not can_capture(), reason="live capture needs root")


class LiveKitchen:
    """A kitchen sniffing ``lo`` in a thread; dumplings collected as dicts."""

    def __init__(self, bpf_filter: str, chefs: list, chef_options: dict | None = None,
                 poke_interval: float | None = None, interface: str = "lo") -> None:
        self.dumplings: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.source = LiveSource([interface], bpf_filter, poll_timeout=0.05)
        self.kitchen = Kitchen("live-test", resolve_chefs(chefs), sink=self._sink,
                               poke_interval=poke_interval, chef_options=chef_options,
                               interface=interface, bpf_filter=bpf_filter)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _sink(self, dumpling: dict, data: bytes) -> None:
        with self._lock:
            self.dumplings.append(decode(data))

    def _run(self) -> None:
        try:
            self.kitchen.run(self.source, stop=self._stop.is_set, live=True)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self) -> "LiveKitchen":
        self._thread.start()
        return self

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(list(self.dumplings)):
                    return True
            time.sleep(0.05)
        with self._lock:
            return predicate(list(self.dumplings))

    def stop(self, settle: float = 0.3) -> None:
        time.sleep(settle)  # let the last packets of the exchange arrive
        self._stop.set()
        self._thread.join(timeout=10)
        self.source.close()
        self.kitchen.finish()
        if self.error is not None:
            raise self.error

    def payloads(self, chef: str | None = None) -> list[Any]:
        with self._lock:
            return [d["payload"] for d in self.dumplings
                    if chef is None or d["metadata"]["chef"] == chef]


@pytest.fixture
def live_kitchen():
    """``with live_kitchen(filter, chefs) as lk: ...`` sniffs lo while the block runs."""
    if not can_capture():
        pytest.skip("live capture needs root (CAP_NET_RAW)")

    @contextlib.contextmanager
    def _live(bpf_filter: str, chefs: list, chef_options: dict | None = None,
              poke_interval: float | None = None) -> Iterator[LiveKitchen]:
        lk = LiveKitchen(bpf_filter, chefs, chef_options, poke_interval).start()
        time.sleep(0.1)
        try:
            yield lk
        finally:
            lk.stop()

    return _live


def nd_command(name: str) -> list[str]:
    """The console script from this venv (falls back to running the module)."""
    exe = VENV_BIN / name
    if exe.exists():
        return [str(exe)]
    found = shutil.which(name)
    if found:
        return [found]
    module = {"nd-sniff": "sniff", "nd-hub": "hub", "nd-print": "print",
              "nd-hubstatus": "hubstatus", "nd-hubdetails": "hubdetails"}[name]
    return [sys.executable, "-m", f"netdumplings.cli.{module}"]


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


@pytest.fixture
def hub_process():
    """Start ``nd-hub`` on free ports; yields (in_port, out_port, popen)."""
    import subprocess

    procs = []

    def _start(*extra: str, status_freq: float = 1.0) -> tuple[int, int, Any]:
        in_port, out_port = free_port(), free_port()
        cmd = nd_command("nd-hub") + ["--in-port", str(in_port), "--out-port", str(out_port),
                                      "--status-freq", str(status_freq), "--metrics-port", "0",
                                      *extra]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
        procs.append(p)
        wait_port(in_port)
        wait_port(out_port)
        return in_port, out_port, p

    yield _start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except Exception:
                p.kill()


class Proc:
    """A subprocess whose stderr (and optionally stdout) lines are collected by threads."""

    def __init__(self, cmd: list[str], *, cwd: str | None = None, stdin: Any = None,
                 env: dict | None = None, capture_stdout: bool = True) -> None:
        import subprocess

        self.cmd = cmd
        self.p = subprocess.Popen(cmd, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE if
                                  capture_stdout else subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, start_new_session=True,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._pump, args=(self.p.stderr, self.err),
                                          daemon=True)]
        if capture_stdout:
            self._threads.append(threading.Thread(target=self._pump,
                                                  args=(self.p.stdout, self.out), daemon=True))
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: Any, lines: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def wait_line(self, text: str, timeout: float = 10.0, stream: str = "err") -> str:
        lines = self.err if stream == "err" else self.out
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(lines):
                if text in line:
                    return line
            if self.p.poll() is not None and not any(t.is_alive() for t in self._threads):
                break
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not seen from {self.cmd[0]} within {timeout}s; "
                             f"stderr: {self.err[-20:]}")

    def wait(self, timeout: float = 30.0) -> int:
        rc = self.p.wait(timeout)
        for t in self._threads:
            t.join(5)
        return rc

    def terminate(self, timeout: float = 15.0) -> int:
        if self.p.poll() is None:
            self.p.terminate()
        try:
            return self.wait(timeout)
        except Exception:
            self.p.kill()
            return self.wait(5)

    def kill(self) -> None:
        # The whole session: netdumplings 0.5's nd-sniff leaves a child process behind
        # when only its main process is killed.
        import signal
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)


@pytest.fixture
def procs():
    """Start processes with ``procs(cmd, ...)``; all are killed at the end of the test."""
    started: list[Proc] = []

    def _spawn(cmd: list[str], **kwargs: Any) -> Proc:
        proc = Proc(cmd, **kwargs)
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        proc.kill()


def run_nd(procs: Callable[..., Any], name: str, *args: str, timeout: float = 30,
           **kw: Any) -> tuple[int, Any]:
    """Run one of our commands to its end -> (exit code, Proc with .out/.err lines)."""
    p = procs(nd_command(name) + list(args), **kw)
    return p.wait(timeout), p


def assert_no_traceback(p: Any) -> None:
    assert not any("Traceback" in line for line in p.err), "\n".join(p.err)


# -- network namespaces the tests make (traffic that must not touch the host's) ----------


def run_ip(*cmd: str) -> None:
    import subprocess
    subprocess.run(cmd, check=True, timeout=20, capture_output=True)


@contextlib.contextmanager
def veth_namespaces(prefix: str, net: str, setup: Callable[[dict[str, str]], None]
                    ) -> Iterator[dict[str, str]]:
    """Namespaces A and B joined by a veth pair, A at ``net``.1/24 and B at ``net``.2/24;
    ``setup(names)`` runs before the links go up (MACs, MTU, more addresses). Skips the
    test when namespaces cannot be made; deletes them (and so the veth) afterwards."""
    import subprocess
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    tag = f"{os.getpid() % 100000}"
    names = {"A": f"{prefix}A{tag}", "B": f"{prefix}B{tag}", "if_a": f"{prefix}a{tag}",
             "if_b": f"{prefix}b{tag}", "ip_a": f"{net}.1", "ip_b": f"{net}.2"}
    made = []
    try:
        for ns in (names["A"], names["B"]):
            run_ip("ip", "netns", "add", ns)
            made.append(ns)
        run_ip("ip", "link", "add", names["if_a"], "netns", names["A"], "type", "veth",
               "peer", "name", names["if_b"], "netns", names["B"])
        setup(names)
        for side, iface, ip in (("A", "if_a", "ip_a"), ("B", "if_b", "ip_b")):
            run_ip("ip", "-n", names[side], "addr", "add", f"{names[ip]}/24", "dev",
                   names[iface])
            run_ip("ip", "-n", names[side], "link", "set", names[iface], "up")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], timeout=20)
        pytest.skip(f"cannot create network namespaces: {exc}")
    try:
        yield names
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], timeout=20)


def exchange_across_namespaces(ns: dict[str, str], server: str, client: str, address: str,
                               pcap: Path, *bpf: str) -> dict[str, Any]:
    """Run the Python ``server`` script in namespace B (it prints "ready" when it listens)
    and the ``client`` script in A, both given ``address``, while tcpdump writes A's end of
    the veth to ``pcap``; returns the JSON line the client printed."""
    import subprocess
    srv = subprocess.Popen(["ip", "netns", "exec", ns["B"], sys.executable, "-c", server,
                            address], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    tcpdump = subprocess.Popen(["ip", "netns", "exec", ns["A"], "tcpdump", "-U",
                                "--immediate-mode", "-n", "-i", ns["if_a"], "-w", str(pcap),
                                *bpf], stderr=subprocess.PIPE, text=True)
    try:
        assert "ready" in srv.stdout.readline()
        assert "listening" in tcpdump.stderr.readline()
        out = subprocess.run(["ip", "netns", "exec", ns["A"], sys.executable, "-c", client,
                              address], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        time.sleep(0.5)   # tcpdump writes the last packets
        return json.loads(out.stdout)
    finally:
        tcpdump.terminate()
        tcpdump.wait(10)
        srv.stdin.close()
        srv.terminate()
        srv.wait(10)


def cook(path: Any, chefs: list[type], **kitchen_kwargs: Any) -> tuple[list[dict[str, Any]], Kitchen]:
    """The dumplings ``chefs`` (classes) make from a capture file, and the kitchen that made
    them (for its stats): ``read_dumplings`` given chef instances, whose ``kitchen`` it sets."""
    from netdumplings.kitchen.offline import read_dumplings
    cooks = [chef() for chef in chefs]
    dumplings = list(read_dumplings(str(path), cooks, **kitchen_kwargs))
    return dumplings, cooks[0].kitchen


# -- hostile inputs shared by the decoders' tests -------------------------------------------


def pointer_chain_message(depth: int, qid: int = 1) -> bytes:
    """A 64 KB DNS query: ``depth`` questions building a backward compression chain (each
    name one label plus a pointer to the previous name), then as many questions as fit
    pointing at the chain's end."""
    msg = bytearray(struct.pack("!HHHHHH", qid, 0x0100, 0, 0, 0, 0))
    prev = None
    for _ in range(depth):
        here = len(msg)
        msg += (b"\x01a\x00" if prev is None else b"\x01a" + (0xC000 | prev).to_bytes(2, "big"))
        msg += b"\x00\x01\x00\x01"
        prev = here
    tail = (0xC000 | prev).to_bytes(2, "big") + b"\x00\x01\x00\x01"
    msg += tail * ((65535 - len(msg)) // len(tail))
    msg[4:6] = (depth + (len(msg) - 12 - 7 - (depth - 1) * 8) // 6).to_bytes(2, "big")
    return bytes(msg)


# -- real bytes for a decoder on its own ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Payload:
    """One TCP or UDP packet's payload, as a decoder tested on its own is fed it."""

    time: float
    transport: str   # "tcp" or "udp"
    src: str         # "ip:port"
    dst: str
    data: bytes
    seq: int | None  # TCP sequence number of the first byte


def l4_payloads(path: Path, empty: bool = False) -> list[Payload]:
    """The payload-carrying TCP and UDP packets of a capture (with ``empty``, the others
    too), in capture order, read with the capture reader and its header decode only (no
    scapy, no kitchen, no flows), so a decoder's test gets the real bytes without the
    framework doing its work for it."""
    def endpoint(ip: str, port: int) -> str:
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    out = []
    source = PcapSource(path)
    try:
        for p in source:
            if p.l4 in ("tcp", "udp") and (empty or p.l4_length):
                out.append(Payload(p.time, p.l4, endpoint(p.ip_src, p.sport),
                                   endpoint(p.ip_dst, p.dport), bytes(p.l4_payload),
                                   p.tcp_seq if p.l4 == "tcp" else None))
    finally:
        source.close()
    return out


def nanosecond_copy(src: Path, dst: Path, extra_ns: int = 123) -> None:
    """``src`` (a microsecond pcap) as a nanosecond pcap, with sub-microsecond digits."""
    blob = src.read_bytes()
    out, off = bytearray(b"\x4d\x3c\xb2\xa1" + blob[4:24]), 24
    while off < len(blob):
        sec, usec, caplen, wirelen = struct.unpack_from("<IIII", blob, off)
        out += struct.pack("<IIII", sec, usec * 1000 + extra_ns, caplen, wirelen)
        out += blob[off + 16:off + 16 + caplen]
        off += 16 + caplen
    dst.write_bytes(bytes(out))
