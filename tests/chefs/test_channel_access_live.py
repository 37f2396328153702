"""ChannelAccessChef live: a caproto IOC and caproto's own clients on loopback, captured by
a live kitchen on lo and by ``tcpdump -U -w - | nd-sniff --read -``."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from netdumplings.chefs.channel_access import ChannelAccessChef


# -- live: a caproto IOC and caproto's clients on loopback -------------------------------

IOC = textwrap.dedent("""
    import logging
    from caproto.server import PVGroup, pvproperty, run

    logging.basicConfig(level=logging.INFO)  # "Listening on 127.0.0.1:PORT" tells the port

    class Steamer(PVGroup):
        temp = pvproperty(value=98.5, name="temp", units="degC", precision=1)
        count = pvproperty(value=12, name="count")

    ioc = Steamer(prefix="ndtest:")
    print("READY", flush=True)
    run(ioc.pvdb, interfaces=["127.0.0.1"])
""")


def free_udp_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


@pytest.fixture
def caproto_ioc(tmp_path, monkeypatch):
    """A caproto IOC on 127.0.0.1 (subprocess) and this process's CA environment pointing
    at it; yields (udp server port, repeater port, tcp port)."""
    server_port, repeater_port = free_udp_port(), free_udp_port()
    env = {"EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CA_AUTO_ADDR_LIST": "NO",
           "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
           "EPICS_CA_SERVER_PORT": str(server_port),
           "EPICS_CA_REPEATER_PORT": str(repeater_port)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # Hold the TCP side of the server port so the IOC has to take another TCP port, as
    # caproto servers often do: that circuit is then found by detect(), not by port.
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", server_port))
    script = tmp_path / "ioc.py"
    script.write_text(IOC)
    # caproto's clients spawn a caproto-repeater that runs forever unless one is already
    # there: start it here, so it ends with the test instead of outliving the suite.
    repeater = subprocess.Popen([sys.executable, "-m", "caproto.commandline.repeater",
                                 "--quiet"], env={**os.environ, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ioc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env={**os.environ, **env})
    try:
        from caproto.sync.repeater import RepeaterAlreadyRunning, check_for_running_repeater
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and repeater.poll() is None:
            try:
                check_for_running_repeater(("0.0.0.0", repeater_port)).close()
            except RepeaterAlreadyRunning:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("caproto-repeater did not start")
        tcp_port = None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(ioc.stdout.readline, "")),
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + 20
        while tcp_port is None and time.monotonic() < deadline and ioc.poll() is None:
            for line in list(lines):
                m = re.search(r"Listening on 127\.0\.0\.1:(\d+)", line)
                if m:
                    tcp_port = int(m.group(1))
            time.sleep(0.05)
        assert tcp_port, f"IOC did not start: {''.join(lines)[-2000:]}"
        assert tcp_port != server_port
        yield server_port, repeater_port, tcp_port
    finally:
        for proc in (ioc, repeater):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        blocker.close()


@pytest.mark.live
def test_live_caproto_ioc_and_clients(live_kitchen, caproto_ioc):
    server_port, repeater_port, tcp_port = caproto_ioc
    from caproto.sync.client import read, write
    from caproto.threading.client import Context

    bpf = f"udp port {server_port} or udp port {repeater_port} or tcp port {tcp_port}"
    options = {"ChannelAccessChef": {"ports": [server_port, repeater_port]}}
    with live_kitchen(bpf, [ChannelAccessChef], options) as lk:
        ctx = Context()
        try:
            (pv,) = ctx.get_pvs("ndtest:count", timeout=5)
            pv.wait_for_connection(timeout=5)
            updates: list = []
            sub = pv.subscribe(data_type="time")

            def on_update(subscription, response) -> None:
                updates.append(list(response.data))

            # caproto holds callbacks weakly: on_update must stay referenced
            sub.add_callback(on_update)
            for _ in range(100):
                if updates:
                    break
                time.sleep(0.05)
            value = read("ndtest:temp", timeout=5).data
            assert list(value) == [98.5]
            write("ndtest:count", [13], notify=True, timeout=5)
            read("ndtest:count", timeout=5)
            for _ in range(100):
                if len(updates) >= 2:
                    break
                time.sleep(0.05)
            assert updates[:2] == [[12], [13]]

            def seen(ds: list) -> bool:
                cmds = [d["payload"].get("command") for d in ds]
                return cmds.count("EventAddResponse") >= 2 and "WriteNotifyResponse" in cmds
            assert lk.wait_for(seen, timeout=10)
        finally:
            ctx.disconnect()
    payloads = lk.payloads("ChannelAccessChef")

    commands = [p for p in payloads if "command" in p]
    assert not [p for p in commands if p["command"] == "error"]

    def find(command: str, pv: str) -> list[dict]:
        return [p for p in commands if p["command"] == command and p["pv"] == pv]

    for name in ("ndtest:count", "ndtest:temp"):
        assert find("SearchRequest", name), name
        assert find("SearchResponse", name), name
        assert find("CreateChanRequest", name) and find("CreateChanResponse", name)
    search = find("SearchResponse", "ndtest:temp")[0]
    assert search["transport"] == "udp" and search["fields"]["port"] == tcp_port
    assert search["server_address"] == f"127.0.0.1:{tcp_port}"
    read_resp = find("ReadNotifyResponse", "ndtest:temp")
    assert read_resp[0]["fields"]["data"] == [98.5] and read_resp[0]["latency"] >= 0
    assert read_resp[0]["flow"]["server"] == f"127.0.0.1:{tcp_port}"  # found by detect()
    (write_req,) = find("WriteNotifyRequest", "ndtest:count")
    assert write_req["fields"]["data"] == [13]
    assert find("WriteNotifyResponse", "ndtest:count")[0]["fields"]["status"] == "ECA_NORMAL"
    assert find("EventAddRequest", "ndtest:count")
    monitor = [p["fields"]["data"] for p in find("EventAddResponse", "ndtest:count")]
    assert monitor[:2] == [[12], [13]]
    stats = [p for p in payloads if p.get("kind") == "stats"]
    assert stats and {"ndtest:count", "ndtest:temp"} <= set(stats[-1]["pvs_seen"])


# -- the caproto-shark experience, live -------------------------------------------------------


@pytest.mark.live
def test_live_tcpdump_pipe_into_nd_sniff(caproto_ioc):
    """``tcpdump -U -w - | nd-sniff --read - -c ChannelAccessChef --print --format ...``"""
    import shutil

    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.skip("tcpdump not installed")
    server_port, repeater_port, tcp_port = caproto_ioc
    from caproto.sync.client import read

    bpf = f"udp port {server_port} or tcp port {tcp_port}"
    fmt = "{timestamp} {src}->{dst} {payload[command]} {payload[pv]}"
    dump = subprocess.Popen([tcpdump, "-i", "lo", "-U", "-w", "-", bpf],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sniff = subprocess.Popen(
        [str(Path(sys.executable).parent / "nd-sniff"), "--read", "-", "-q",
         "-c", "ChannelAccessChef", "-o", f"ChannelAccessChef.ports={server_port}",
         "--print", "--format", fmt],
        stdin=dump.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dump.stdout.close()  # nd-sniff owns the pipe now
    try:
        # tcpdump says "listening on lo" on stderr once it captures
        listening = threading.Event()
        threading.Thread(target=lambda: (dump.stderr.readline(), listening.set()),
                         daemon=True).start()
        assert listening.wait(10), "tcpdump did not start"
        time.sleep(0.2)
        assert list(read("ndtest:temp", timeout=5).data) == [98.5]
        # without --immediate-mode tcpdump gets packets from the kernel in blocks, at the
        # latest after its 1 s buffer timeout; stopping sooner would lose them
        time.sleep(1.5)
    finally:
        dump.terminate()
        dump.wait(5)
        out, err = sniff.communicate(timeout=30)
    lines = out.decode().splitlines()
    text = "\n".join(lines)
    assert sniff.returncode == 0, err.decode()[-2000:]
    assert re.search(rf" 127\.0\.0\.1:\d+->127\.0\.0\.1:{server_port} SearchRequest "
                     r"ndtest:temp$", text, re.M), text
    assert re.search(rf" 127\.0\.0\.1:{tcp_port}->127\.0\.0\.1:\d+ ReadNotifyResponse "
                     r"ndtest:temp$", text, re.M), text
    assert re.search(rf"127\.0\.0\.1:\d+->127\.0\.0\.1:{tcp_port} CreateChanRequest "
                     r"ndtest:temp$", text, re.M), text
