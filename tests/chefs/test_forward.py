"""Forwarded packets: PacketForwardChef -> hub -> nd-cook (chefs run centrally) / nd-dump
(pcap, pcapng, stdout, rotation), against the chefs run directly and tcpdump/tshark."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from netdumplings.chefs.forward import BatchTracker, PacketForwardChef, iter_frames
from netdumplings.capture.pcapwriter import Dumper, split_time
from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.kitchen.offline import read_dumplings
from netdumplings.capture.packet import Packet
from netdumplings.wire.sender import Outbox
from netdumplings.capture.sources import PcapSource

from conftest import DATA, nanosecond_copy, nd_command

TCPDUMP = shutil.which("tcpdump")
TSHARK = shutil.which("tshark")
needs_tcpdump = pytest.mark.skipif(TCPDUMP is None, reason="tcpdump not installed")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")

COOK_CHEFS = ["FluentdForwardChef", "ZmtpChef", "Http1Chef"]
ALL_PCAPS = sorted(DATA.glob("*.pcap")) + [DATA / "corrupt" / "http1-snaplen96.pcap"]


def forwarded(path: Path, **options) -> list[dict]:
    return list(read_dumplings(path, [PacketForwardChef],
                               chef_options={"PacketForwardChef": options}))


def raw_records(path: Path) -> list[tuple[int, int, int, bytes]]:
    """(sec, usec, wirelen, data) straight from a little-endian microsecond pcap."""
    blob = path.read_bytes()
    assert blob[:4] == b"\xd4\xc3\xb2\xa1"
    out, off = [], 24
    while off < len(blob):
        sec, usec, caplen, wirelen = struct.unpack_from("<IIII", blob, off)
        out.append((sec, usec, wirelen, blob[off + 16:off + 16 + caplen]))
        off += 16 + caplen
    return out


# -- the chef ------------------------------------------------------------------------------


def test_batches_hold_every_frame_in_order_with_lengths_and_linktype():
    path = DATA / "fluentd-segmented.pcap"
    dumplings = forwarded(path, batch_packets=10, batch_ms=1e9)
    source = list(PcapSource(path))
    sizes = [len(d["payload"]["packets"]) for d in dumplings]
    assert sizes == [10] * 10 + [5]
    assert [d["payload"]["batch"] for d in dumplings] == list(range(1, 12))
    assert [d["payload"]["first"] for d in dumplings] == [10 * i for i in range(11)]
    frames = [f for d in dumplings for f in iter_frames(d["payload"])]
    assert len(frames) == len(source) == 105
    for f, p in zip(frames, source):
        assert (f["data"], f["ts"], f["wirelen"], f["linktype"]) == \
            (p.data, p.time, p.wirelen, p.linktype)
    # The last batch goes out at the end of the capture (Kitchen.finish), not later.
    assert dumplings[-1]["metadata"]["driver"] == "interval"


def test_forwarding_never_dissects_with_scapy():
    packets = list(PcapSource(DATA / "http1-keepalive.pcap"))
    out = []
    k = Kitchen("k", [PacketForwardChef], sink=lambda d, b: out.append(d), poke_interval=None)
    for p in packets:
        k.process(p)
    k.finish()
    assert sum(len(d["payload"]["packets"]) for d in out) == len(packets)
    assert not any(p.dissected for p in packets)


def test_batch_by_capture_time_span():
    path = DATA / "zmtp-pub-sub.pcap"   # 26 packets over 1.6 s
    source = list(PcapSource(path))
    dumplings = forwarded(path, batch_packets=1000, batch_ms=200)
    assert len(dumplings) > 2
    for d in dumplings:
        ts = [f["ts"] for f in d["payload"]["packets"]]
        # a batch is cut at the first packet that reaches the span, so all frames but
        # that last one lie within it
        assert ts[max(0, len(ts) - 2)] - ts[0] < 0.2
        if d is not dumplings[-1]:
            assert ts[-1] - ts[0] >= 0.2
    assert sum(len(d["payload"]["packets"]) for d in dumplings) == len(source)


def test_snaplen_cuts_frames_and_keeps_wire_length():
    path = DATA / "http1-keepalive.pcap"
    source = list(PcapSource(path))
    frames = [f for d in forwarded(path, snaplen=60) for f in iter_frames(d["payload"])]
    assert any(len(p.data) > 60 for p in source)
    for f, p in zip(frames, source, strict=True):
        assert f["data"] == p.data[:60]
        assert f["wirelen"] == p.wirelen


def test_base64_on_json_and_raw_bytes_option():
    path = DATA / "dns-queries.pcap"
    d = forwarded(path)[0]["payload"]["packets"][0]
    assert isinstance(d["data"], str) and base64.b64decode(d["data"]) == \
        next(iter(PcapSource(path))).data
    # data_encoding=bytes leaves bytes in the payload (for a msgpack link); if they meet
    # the JSON encoder anyway they become text (valid UTF-8) or {"$base64"}: both come back.
    frames = [b"plain ascii frame, valid utf-8 \xc3\xa9", b"\xff\xfe\x00 not utf-8",
              bytes(range(256))]
    seen, encoded = [], []
    k = Kitchen("k", [PacketForwardChef], poke_interval=None,
                sink=lambda dumpling, b: (seen.append(dumpling), encoded.append(b)),
                chef_options={"PacketForwardChef": {"data_encoding": "bytes"}})
    for i, data in enumerate(frames):
        k.process(Packet(data, 1000.0 + i / 1000, linktype=147))
    k.finish()
    assert [r["data"] for r in seen[0]["payload"]["packets"]] == frames
    on_json = json.loads(encoded[0])["payload"]
    assert [type(r["data"]) for r in on_json["packets"]] == [str, dict, dict]
    assert [f["data"] for f in iter_frames(on_json)] == frames
    assert [f["linktype"] for f in iter_frames(on_json)] == [147] * 3


def test_opt_in_and_option_validation():
    from netdumplings.cli.sniff import build_parser, select_chefs
    _, names = select_chefs(build_parser().parse_args([]))
    assert "PacketForwardChef" not in names and "Http1Chef" in names
    with pytest.raises(Exception):
        PacketForwardChef(batch_packets=0)
    with pytest.raises(Exception):
        PacketForwardChef(bogus=1)


def test_outbox_drop_counter_reported_when_the_kitchen_exposes_its_outbox():
    out = []
    k = Kitchen("k", [PacketForwardChef], sink=lambda d, b: out.append(d), poke_interval=None,
                chef_options={"PacketForwardChef": {"batch_packets": 5}})
    assert forwarded(DATA / "dns-queries.pcap")[0]["payload"]["outbox_dropped_total"] is None
    k.outbox = Outbox(max_bytes=100)   # what nd-sniff would attach
    for i in range(4):
        k.outbox.put(b"x" * 60)
    for p in PcapSource(DATA / "dns-queries.pcap"):
        k.process(p)
    assert k.outbox.dropped_total == 3
    assert out[0]["payload"]["outbox_dropped_total"] == 3


def test_batch_tracker_duplicates_gaps_restart():
    t = BatchTracker()
    key = ("k", "h")
    assert t.check(key, {"batch": 1, "first": 0}, 5) == t.OK
    assert t.check(key, {"batch": 2, "first": 5}, 5) == t.OK
    assert t.check(key, {"batch": 2, "first": 5}, 5) == t.DUPLICATE
    assert t.check(key, {"batch": 5, "first": 40}, 5) == t.OK
    assert (t.missed_batches, t.missed_packets, t.duplicates) == (2, 30, 1)
    assert t.check(key, {"batch": 1, "first": 0}, 5) == t.RESTART


@pytest.mark.parametrize("path", ALL_PCAPS, ids=lambda p: p.name)
def test_float_time_gives_back_every_microsecond(path):
    """The kitchen's float times, split for a record header, are the source's exact
    (sec, usec) for every packet of every microsecond capture we have."""
    recs = raw_records(path)
    pkts = list(PcapSource(path))
    assert len(recs) == len(pkts)
    for (sec, usec, _, _), p in zip(recs, pkts):
        assert split_time(p.time, None, False) == (sec, usec)
        assert split_time(p.time, None, True) == (sec, usec * 1000)
    assert split_time(0.0, 1_795_415_457_425_939_123, True) == (1_795_415_457, 425_939_123)
    assert split_time(0.0, 1_795_415_457_425_939_999, False) == (1_795_415_457, 425_939)


# -- writing pcap/pcapng without a hub ----------------------------------------------------


def _frames(path: Path) -> list[dict]:
    return [f for d in forwarded(path) for f in iter_frames(d["payload"])]


def test_pcap_writer_reproduces_the_source_file_byte_for_byte(tmp_path):
    # Our pcap header is the one tcpdump writes (v2.4, snaplen 262144), so whole files match.
    for name in ("http1-keepalive.pcap", "fluentd-segmented.pcap", "zmtp-req-rep.pcap"):
        dumper = Dumper(str(tmp_path / name))
        dumper.write_batch("k", _frames(DATA / name))
        dumper.close()
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_pcapng_mixed_linktypes_and_merged_pcap_skips(tmp_path):
    eth = _frames(DATA / "dns-queries.pcap")
    raw = [dict(f, data=f["data"][14:], wirelen=f["wirelen"] - 14, linktype=101,
                interface="tun0") for f in eth]
    ng = Dumper(str(tmp_path / "m.pcapng"), pcapng=True)
    ng.write_batch("a", eth)
    ng.write_batch("b", raw)
    ng.close()
    back = list(PcapSource(tmp_path / "m.pcapng"))
    assert [(p.data, p.linktype, p.time) for p in back] == \
        [(f["data"], f["linktype"], f["ts"]) for f in eth + raw]
    pc = Dumper(str(tmp_path / "m.pcap"))
    pc.write_batch("a", eth)
    pc.write_batch("b", raw)
    pc.close()
    assert pc.skipped_linktype == len(raw)
    assert [p.data for p in PcapSource(tmp_path / "m.pcap")] == [f["data"] for f in eth]
    # %k: a file per kitchen, each with its own link type
    per = Dumper(str(tmp_path / "k-%k.pcap"))
    per.write_batch("a", eth)
    per.write_batch("site/b", raw)
    per.close()
    assert sorted(os.path.basename(f) for f in per.files) == ["k-a.pcap", "k-site_b.pcap"]
    assert [p.linktype for p in PcapSource(tmp_path / "k-site_b.pcap")] == [101] * len(raw)


def test_nanosecond_output_uses_ts_ns(tmp_path):
    f = dict(_frames(DATA / "dns-queries.pcap")[0])
    f["ts_ns"] = 1_795_415_457_000_000_001
    d = Dumper(str(tmp_path / "n.pcap"), nano=True)
    d.write_batch("k", [f])
    d.close()
    blob = (tmp_path / "n.pcap").read_bytes()
    assert blob[:4] == b"\x4d\x3c\xb2\xa1"
    assert struct.unpack_from("<II", blob, 24) == (1_795_415_457, 1)


@pytest.mark.parametrize("stream", [False, True], ids=["file", "stream"])
def test_nanosecond_captures_forward_and_dump_exactly(tmp_path, stream):
    """Nanosecond pcap in, forwarded, written with --nano: every record header (and byte)
    as in the source; and a nanosecond pcapng read back gives the same nanoseconds. The
    float capture time alone cannot carry them (about 0.24 us resolution at this epoch)."""
    src = tmp_path / "ns.pcap"
    nanosecond_copy(DATA / "fluentd-segmented.pcap", src)
    packets = list(PcapSource(src.open("rb") if stream else src))
    assert packets and all(p.time_ns % 1000 == 123 for p in packets)
    frames = [f for d in read_dumplings(src, [PacketForwardChef])
              for f in iter_frames(d["payload"])]
    assert [f["ts_ns"] for f in frames] == [p.time_ns for p in packets]
    out = Dumper(str(tmp_path / "out.pcap"), nano=True)
    out.write_batch("k", frames)
    out.close()
    assert (tmp_path / "out.pcap").read_bytes()[24:] == src.read_bytes()[24:]
    ng = Dumper(str(tmp_path / "out.pcapng"), pcapng=True, nano=True)
    ng.write_batch("k", frames)
    ng.close()
    back = list(PcapSource(tmp_path / "out.pcapng"))
    assert [(p.time_ns, p.data) for p in back] == [(p.time_ns, p.data) for p in packets]
    # microsecond captures stay plain Packets: nothing to carry, nothing to pay
    assert type(next(iter(PcapSource(DATA / "fluentd-segmented.pcap")))) is Packet


# -- through a hub: helpers ------------------------------------------------------------------


def sniff_forward(procs, in_port: int, path: Path, name: str, *opts: str):
    return procs(nd_command("nd-sniff") + ["-r", str(path), "-n", name, "-c",
                                           "PacketForwardChef", "--hub", f"127.0.0.1:{in_port}",
                                           *opts])


def printer(procs, out_port: int):
    p = procs(nd_command("nd-print") + ["--hub", f"127.0.0.1:{out_port}", "--json"])
    p.wait_line("connected")
    p.wait_line("SystemStatusChef", stream="out")   # subscribed: the hub is feeding it
    return p


def dumplings_of(p, kitchen: str) -> list[dict]:
    out = []
    for line in list(p.out):
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d.get("metadata", {}).get("kitchen") == kitchen:
            out.append(d)
    return out


def comparable(d: dict) -> dict:
    """What must be equal between a chef run in the capturing kitchen and in nd-cook: all
    but the metadata that names who made it and when (kitchen, creation_time, sequence,
    host)."""
    md = d["metadata"]
    return {"chef": md["chef"], "driver": md["driver"], "capture_time": md.get("capture_time"),
            "payload": d["payload"]}


def wait_until(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


# -- nd-cook ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cooked_dumplings_equal_the_chefs_run_directly(hub_process, procs):
    """Four kitchens forward at once (two of them the *same* HTTP capture, so their flows
    have identical 4-tuples); nd-cook runs Fluentd, ZMTP and HTTP/1 chefs per source and
    every source's output equals read_dumplings on its file, flows still open at the end
    included (closed when the hub stops listing the kitchen)."""
    in_port, out_port, _ = hub_process()
    sources = {"kf": DATA / "fluentd-segmented.pcap", "kz": DATA / "zmtp-multipart-long.pcap",
               "kh1": DATA / "http1-keepalive.pcap", "kh2": DATA / "http1-keepalive.pcap"}
    expected = {k: [comparable(d) for d in read_dumplings(p, COOK_CHEFS, poke_interval=5.0)]
                for k, p in sources.items()}
    assert all(expected.values())
    cook = procs(nd_command("nd-cook") + ["--hub", f"127.0.0.1:{out_port}", "--publish",
                                          f"127.0.0.1:{in_port}", "-p", "5"]
                 + [a for c in COOK_CHEFS for a in ("-c", c)])
    cook.wait_line("hub status received")
    pr = printer(procs, out_port)
    kitchens = [sniff_forward(procs, in_port, p, k, "-o", "PacketForwardChef.batch_packets=9")
                for k, p in sources.items()]
    for k in kitchens:
        assert k.wait(60) == 0, k.err
    total = sum(len(v) for v in expected.values())
    wait_until(lambda: sum(len(dumplings_of(pr, f"central/{k}")) for k in sources) >= total, 30)
    for k in sources:
        got = [comparable(d) for d in dumplings_of(pr, f"central/{k}")]
        assert got == expected[k], k
    assert cook.terminate() == 0
    summary = cook.wait_line(" batches from ")
    assert "from 4 kitchens" in summary and "0 batches (0 packets) missed" in summary
    assert any(line.endswith("ended: 105 packets cooked into "
                             f"{len(expected['kf'])} dumplings") for line in cook.err)


@pytest.mark.slow
def test_cook_from_kitchen_filter_and_no_forward_loop(hub_process, procs):
    in_port, out_port, _ = hub_process()
    cook = procs(nd_command("nd-cook") + ["--hub", f"127.0.0.1:{out_port}", "--publish",
                                          f"127.0.0.1:{in_port}", "-c", "Http1Chef",
                                          "--from-kitchen", "wanted", "-n", "hq"])
    cook.wait_line("hub status received")
    pr = printer(procs, out_port)
    path = DATA / "http1-redirect.pcap"
    for name in ("other", "wanted"):
        assert sniff_forward(procs, in_port, path, name).wait(60) == 0
    n = len(list(read_dumplings(path, ["Http1Chef"])))
    assert wait_until(lambda: len(dumplings_of(pr, "hq/wanted")) >= n, 20)
    time.sleep(0.5)
    assert dumplings_of(pr, "hq/other") == []
    assert len(dumplings_of(pr, "hq/wanted")) == n
    cook.terminate()
    # PacketForwardChef itself is refused: it would forward the forwarded packets again.
    bad = subprocess.run(nd_command("nd-cook") + ["-c", "PacketForwardChef"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "PacketForwardChef cannot run" in bad.stderr


# -- nd-dump ------------------------------------------------------------------------------------


def tcpdump_view(path: Path | str) -> str:
    return subprocess.run([TCPDUMP, "-r", str(path), "-tt", "-xx", "-n", "-S"], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def tshark_view(path: Path | str) -> list[str]:
    fields = subprocess.run(
        [TSHARK, "-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len",
         "-e", "frame.cap_len", "-e", "frame.protocols", "-e", "tcp.payload", "-e", "data"],
        capture_output=True, text=True, check=True, timeout=60).stdout
    hexdump = subprocess.run([TSHARK, "-r", str(path), "-x"], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    return [fields, hexdump]


@needs_tcpdump
@needs_tshark
@pytest.mark.slow
@pytest.mark.parametrize("name", ["fluentd-segmented.pcap", "zmtp-plain-auth.pcap",
                                  "corrupt/http1-snaplen96.pcap"])
def test_nd_dump_is_identical_to_the_source(hub_process, procs, tmp_path, name):
    src = DATA / name
    n = len(raw_records(src))
    in_port, out_port, _ = hub_process()
    hub = f"127.0.0.1:{out_port}"
    pcap, ng = tmp_path / "out.pcap", tmp_path / "out.pcapng"
    d1 = procs(nd_command("nd-dump") + ["--hub", hub, "-w", str(pcap), "-c", str(n)])
    d2 = procs(nd_command("nd-dump") + ["--hub", hub, "-w", str(ng), "--pcapng",
                                        "-c", str(n)])
    # -w - into tcpdump -r -, as one would pipe into wireshark -k -i -
    sh = procs(["sh", "-c", " ".join(nd_command("nd-dump")) + f" --hub {hub} -w - -c {n} "
                f"| {TCPDUMP} -r - -tt -xx -n -S 2>/dev/null"])
    for d in (d1, d2):
        d.wait_line("connected")
    sh.wait_line("connected")
    time.sleep(0.5)  # let the subscriptions reach the hub
    assert sniff_forward(procs, in_port, src, "k1", "-o",
                         "PacketForwardChef.batch_packets=4").wait(60) == 0
    for d in (d1, d2, sh):
        assert d.wait(30) == 0, d.err
    want_tcpdump, want_tshark = tcpdump_view(src), tshark_view(src)
    assert want_tcpdump.count("\n") > n
    for out in (pcap, ng):
        assert tcpdump_view(out) == want_tcpdump, out
        assert tshark_view(out) == want_tshark, out
    assert "\n".join(sh.out) + "\n" == want_tcpdump
    assert pcap.read_bytes()[24:] == src.read_bytes()[24:]   # every record header and byte
    assert f"{n} packets to 1 file(s)" in d1.wait_line(" packets to ")


def rotation_order(f: Path) -> tuple[str, int]:
    """tcpdump's naming: NAME, NAME1, NAME2 ... within one -G name (strftime of the time)."""
    m = re.match(r"(.*?\.pcap(?:ng)?)(\d*)$", f.name)
    assert m, f.name
    return m.group(1), int(m.group(2) or 0)


@needs_tcpdump
@pytest.mark.slow
def test_rotation_by_size_and_time_keeps_every_packet(hub_process, procs, tmp_path):
    in_port, out_port, _ = hub_process()
    hub = f"127.0.0.1:{out_port}"
    big, slow = DATA / "fluentd-segmented.pcap", DATA / "zmtp-pub-sub.pcap"
    n_big, n_slow = len(raw_records(big)), len(raw_records(slow))
    by_size = procs(nd_command("nd-dump") + ["--hub", hub, "-w", str(tmp_path / "s-%k.pcap"),
                                             "-C", "0.02", "-k", "big", "-c", str(n_big)])
    by_time = procs(nd_command("nd-dump") + ["--hub", hub, "-w",
                                             str(tmp_path / "t-%H%M%S.pcap"), "-G", "0.25",
                                             "-k", "slow", "-c", str(n_slow)])
    both = procs(nd_command("nd-dump") + ["--hub", hub, "-w", str(tmp_path / "b.pcapng"),
                                          "--pcapng", "-G", "0.5", "-C", "0.002", "-k", "slow",
                                          "-c", str(n_slow)])
    for d in (by_size, by_time, both):
        d.wait_line("connected")
    time.sleep(0.5)  # let the subscriptions reach the hub
    assert sniff_forward(procs, in_port, big, "big").wait(60) == 0
    assert sniff_forward(procs, in_port, slow, "slow").wait(60) == 0
    for d in (by_size, by_time, both):
        assert d.wait(30) == 0, d.err
    files = {}
    for pattern in ("s-big.pcap*", "t-*.pcap*", "b.pcapng*"):
        fs = sorted(tmp_path.glob(pattern), key=rotation_order)
        files[pattern] = fs
        assert len(fs) >= 3, (pattern, fs)
    size_files = files["s-big.pcap*"]
    assert all(f.stat().st_size < 20_000 + 70_000 for f in size_files)
    assert "".join(tcpdump_view(f) for f in size_files) == tcpdump_view(big)
    assert "".join(tcpdump_view(f) for f in files["t-*.pcap*"]) == tcpdump_view(slow)
    # -G 0.25 s of capture time: no file spans more than that
    for f in files["t-*.pcap*"]:
        ts = [p.time for p in PcapSource(f)]
        assert ts and ts[-1] - ts[0] < 0.25
    both_packets = [(p.data, p.time) for f in files["b.pcapng*"] for p in PcapSource(f)]
    assert both_packets == [(p.data, p.time) for p in PcapSource(slow)]


def test_dump_cli_errors(tmp_path):
    for argv, msg in ((["-w", "-", "-C", "1"], "rotation"), (["-w", "-", "-G", "1"], "rotation"),
                      (["-w", "x", "-C", "0"], "-C"), (["-w", "x", "-c", "0"], "--count")):
        r = subprocess.run(nd_command("nd-dump") + argv, capture_output=True, text=True,
                           timeout=30, cwd=tmp_path)
        assert r.returncode == 2 and msg in r.stderr, (argv, r.stderr)
