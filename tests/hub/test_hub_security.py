"""Exposing the hub: tokens, hostile clients, connection limits, TLS - against nd-hub."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import threading
import time
from pathlib import Path

import orjson
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import DATA, free_port, nd_command
from hub_helpers import (HubThread, dumpling, frame, get_json, kitchen_hello,
                              metric_samples, open_eater, open_kitchen, raw_ws, read_close,
                              recv_dumplings, start_hub_proc)
from netdumplings.wire.messages import PROTOCOL

pytestmark = pytest.mark.timeout(90)


def refused_code(uri: str, hello: dict, headers: dict | None = None) -> int | None:
    """Connect, say hello, return the close code the hub answers with (None: welcomed)."""
    with connect(uri, additional_headers=headers, max_queue=None) as ws:
        try:
            ws.send(orjson.dumps(hello).decode())
            msg = orjson.loads(ws.recv(timeout=5))
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        assert msg.get("welcome") == "netdumplings"
        return None


def test_tokens_from_env_and_file(procs, tmp_path):
    token_file = tmp_path / "eater.token"
    token_file.write_text("e-secret\n")
    metrics = free_port()
    hub, in_port, out_port = start_hub_proc(
        procs, "--eater-token-file", str(token_file), "--metrics-port", str(metrics),
        "--status-freq", "0.3", env={"ND_KITCHEN_TOKEN": "k-secret"})
    kin, kout = f"ws://127.0.0.1:{in_port}", f"ws://127.0.0.1:{out_port}"
    k = kitchen_hello("k", protocol=PROTOCOL)
    e = {"eater_name": "e", "protocol": PROTOCOL}
    assert refused_code(kin, k) == 1008                                   # missing
    assert refused_code(kin, {**k, "token": "wrong"}) == 1008             # wrong
    assert refused_code(kin, {**k, "token": "e-secret"}) == 1008          # other role's
    assert refused_code(kin, {**k, "token": "k-secret"}) is None
    assert refused_code(kin, k, {"Authorization": "Bearer k-secret"}) is None
    assert refused_code(kin, kitchen_hello("old05")) == 1008              # 0.5 hello
    assert refused_code(kout, e) == 1008
    assert refused_code(kout, {**e, "token": "k-secret"}) == 1008
    assert refused_code(kout, {**e, "token": "e-secret"}) is None
    assert refused_code(kout, e, {"Authorization": "Bearer e-secret"}) is None
    refused = metric_samples(metrics, "netdumplings_hub_connections_refused")
    assert refused == {("kitchen", "auth"): 4, ("eater", "auth"): 2}

    # The real tools, tokens from the environment (never argv).
    bad = procs(nd_command("nd-print") + ["--hub", kout, "--count", "1"],
                env={"ND_EATER_TOKEN": "nope"})
    assert bad.wait(15) != 0  # refused is final, even though nd-print reconnects
    assert any("refused" in line and "1008" in line for line in bad.err), bad.err
    printer = procs(nd_command("nd-print") + ["--hub", kout, "--json", "--count", "7",
                                              "--chef", "DNSLookupChef"],
                    env={"ND_EATER_TOKEN": "e-secret"})
    printer.wait_line("connected")
    kitchen = procs(nd_command("nd-sniff") + ["-r", str(DATA / "dns-queries.pcap"), "-c",
                                              "DNSLookupChef", "--hub", kin],
                    env={"ND_KITCHEN_TOKEN": "k-secret"})
    assert kitchen.wait(30) == 0, kitchen.err
    assert printer.wait(20) == 0
    assert len([line for line in printer.out if line.startswith("{")]) == 7
    # Status dumplings describe hellos, never their tokens.
    with connect(kout) as ws:
        ws.send(orjson.dumps({"eater_name": "w", "token": "e-secret"}).decode())
        status = orjson.loads(ws.recv(timeout=5))
    assert status["metadata"]["chef"] == "SystemStatusChef"
    assert "secret" not in orjson.dumps(status).decode()
    assert hub.p.poll() is None


def test_hostile_clients_while_a_good_eater_is_served(procs):
    metrics = free_port()
    hub, in_port, out_port = start_hub_proc(
        procs, "--hello-timeout", "1.5", "--ping-interval", "1", "--max-message-mb", "1",
        "--metrics-port", str(metrics), "--status-freq", "0")
    good, _ = open_eater(f"ws://127.0.0.1:{out_port}", "good", max_queue=None)
    kitchen, _ = open_kitchen(f"ws://127.0.0.1:{in_port}", "steady")
    stop = threading.Event()
    sent = [0]

    def steady() -> None:
        while not stop.is_set() and sent[0] < 5000:
            sent[0] += 1
            kitchen.send(orjson.dumps(dumpling(sent[0], kitchen="steady")))
            time.sleep(0.01)
    feeder = threading.Thread(target=steady, daemon=True)
    feeder.start()

    # Not even HTTP.
    s = socket.create_connection(("127.0.0.1", in_port), timeout=5)
    s.sendall(b"\x16\x03\x01 garbage \xff\xfe\r\n\r\n")
    reply = s.recv(100)
    assert reply.startswith(b"HTTP/1.1 400") or reply == b""
    s.close()
    # A WebSocket, then bytes that are no valid frame (reserved bits, unknown opcode).
    s = raw_ws(in_port)
    s.sendall(b"\xf3\x85" + os.urandom(64))
    assert read_close(s) == 1002
    # Non-JSON hello.
    s = raw_ws(in_port)
    s.sendall(frame(b"hello? {not json"))
    assert read_close(s) == 4103
    # A 100 MB frame (the header says so; the hub must not wait for - or buffer - it).
    s = raw_ws(in_port)
    s.sendall(frame(orjson.dumps(kitchen_hello("big"))))
    try:
        s.sendall(frame(b"", length=100 << 20) + os.urandom(64 << 10))
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed before we were done: fine
    assert read_close(s) == 1009
    # No hello at all; a hello and then silence, not even pongs.
    quiet = raw_ws(in_port)
    mute = raw_ws(out_port)
    mute.sendall(frame(orjson.dumps({"eater_name": "mute"})))
    # 500 idle connections on the eater port.
    idle = [raw_ws(out_port) for _ in range(500)]
    # An eater that tries to publish.
    publisher, _ = open_eater(f"ws://127.0.0.1:{out_port}", "publisher", max_queue=None)
    publisher.send(orjson.dumps(dumpling(1, kitchen="forged")))
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(10000):
            publisher.recv(timeout=5)
    assert info.value.rcvd.code == 1008

    assert read_close(quiet) == 4104
    codes = [read_close(s, timeout=5) for s in idle]
    assert codes == [4104] * 500
    t0 = time.monotonic()
    code = read_close(mute, timeout=10)  # pings unanswered: closed after ~1 s + 1 s
    assert code == 1011 and time.monotonic() - t0 < 8
    for s in idle + [quiet, mute]:
        s.close()

    stop.set()
    feeder.join(5)
    got = recv_dumplings(good, sent[0], timeout=10)
    assert [d["metadata"]["sequence"] for d in got] == list(range(1, sent[0] + 1))
    assert all(d["metadata"]["kitchen"] == "steady" for d in got)  # nothing forged
    assert hub.p.poll() is None
    health = get_json(f"http://127.0.0.1:{metrics}/healthz")
    assert health["status"] == "ok" and health["eaters"] == 1 and health["kitchens"] == 1
    refused = metric_samples(metrics, "netdumplings_hub_connections_refused")
    assert refused[("eater", "publish")] == 1
    assert refused[("eater", "hello_timeout")] == 500
    assert refused[("kitchen", "hello_timeout")] == 1
    assert refused[("kitchen", "bad_hello")] == 1
    kitchen.close()
    good.close()


def test_connection_limits_per_role():
    with HubThread(max_eaters=2, max_kitchens=1) as h:
        a, _ = open_eater(h.out_uri, "a")
        b, _ = open_eater(h.out_uri, "b")
        assert refused_code(h.out_uri, {"eater_name": "c", "protocol": PROTOCOL}) == 4105
        k, _ = open_kitchen(h.in_uri, "k")
        assert refused_code(h.in_uri, kitchen_hello("k2", protocol=PROTOCOL)) == 4105
        a.close()
        assert h.wait(lambda: h.hub.open["eater"] == 1)
        assert refused_code(h.out_uri, {"eater_name": "d", "protocol": PROTOCOL}) is None
        assert h.call(lambda: dict(h.hub.refused)) == {("eater", "too_many"): 1,
                                                       ("kitchen", "too_many"): 1}
        b.close()
        k.close()


# -- TLS --------------------------------------------------------------------------------

def make_ca_and_cert(dir: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for localhost/127.0.0.1 signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netdumplings test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            # Python 3.13 verifies strictly (VERIFY_X509_STRICT): as from a real CA, the
            # certificate must name its issuer's key
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem, cert_pem, key_pem = dir / "ca.pem", dir / "hub.pem", dir / "hub.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return ca_pem, cert_pem, key_pem


def test_tls_end_to_end(procs, tmp_path):
    pytest.importorskip("cryptography")
    ca, cert, key = make_ca_and_cert(tmp_path)
    metrics = free_port()
    hub, in_port, out_port = start_hub_proc(procs, "--certfile", str(cert), "--keyfile",
                                            str(key), "--metrics-port", str(metrics),
                                            "--status-freq", "0")
    printer = procs(nd_command("nd-print") + ["--hub", f"wss://localhost:{out_port}",
                                              "--cafile", str(ca), "--json", "--count", "7"])
    printer.wait_line("connected")
    kitchen = procs(nd_command("nd-sniff") + ["-r", str(DATA / "dns-queries.pcap"), "-c",
                                              "DNSLookupChef", "--hub",
                                              f"wss://127.0.0.1:{in_port}", "--cafile",
                                              str(ca)])
    assert kitchen.wait(30) == 0, kitchen.err
    assert printer.wait(20) == 0, printer.err
    got = [orjson.loads(line) for line in printer.out if line.startswith("{")]
    assert [d["metadata"]["chef"] for d in got] == ["DNSLookupChef"] * 7
    # Without our CA the certificate is not trusted; plain ws:// is not spoken at all.
    untrusted = procs(nd_command("nd-print") + ["--hub", f"wss://localhost:{out_port}",
                                                "--no-reconnect", "--count", "1"])
    assert untrusted.wait(15) != 0
    assert any("CERTIFICATE_VERIFY_FAILED" in line or "certificate" in line
               for line in untrusted.err), untrusted.err
    with pytest.raises((InvalidStatus, ConnectionError, OSError, Exception)):
        with connect(f"ws://127.0.0.1:{out_port}", open_timeout=3) as ws:
            ws.send(orjson.dumps({"eater_name": "plain"}).decode())
            ws.recv(timeout=3)
    assert hub.p.poll() is None
    ins = metric_samples(metrics, "netdumplings_hub_dumplings_in", ("kitchen", "chef"))
    assert ins[("default", "DNSLookupChef")] == 7


def test_metrics_token(procs):
    """With a metrics token, /metrics (which names kitchens, eaters and chefs) answers 401
    without it; /healthz stays open for liveness probes."""
    import urllib.error
    import urllib.request

    metrics = free_port()
    hub, in_port, out_port = start_hub_proc(procs, "--metrics-port", str(metrics),
                                            "--status-freq", "0",
                                            env={"ND_METRICS_TOKEN": "m-secret"})
    url = f"http://127.0.0.1:{metrics}/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic m-secret"}):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5)
        assert err.value.code == 401
        assert err.value.headers["WWW-Authenticate"] == "Bearer"
    refused = metric_samples(metrics, "netdumplings_hub_connections_refused", token="m-secret")
    assert refused == {("metrics", "auth"): 3}
    assert get_json(f"http://127.0.0.1:{metrics}/healthz")["status"] == "ok"


def test_open_metrics_beside_tokens_are_warned_about(caplog):
    """Tokens on the WebSocket ports but /metrics reachable from other hosts without one:
    the hub says so at start (names of kitchens, eaters and chefs would be readable)."""
    import logging

    with caplog.at_level(logging.WARNING, logger="netdumplings.hub"):
        hub = HubThread(kitchen_token="k", metrics_port=0, metrics_address="0.0.0.0")
        try:
            assert any("metrics on 0.0.0.0" in r.getMessage() and "need no token" in
                       r.getMessage() for r in caplog.records), caplog.text
        finally:
            hub.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="netdumplings.hub"):
        for kwargs in ({"metrics_address": "127.0.0.1"},
                       {"metrics_address": "0.0.0.0", "metrics_token": "m"}):
            hub = HubThread(kitchen_token="k", metrics_port=0, **kwargs)
            hub.close()
    assert not any("need no token" in r.getMessage() for r in caplog.records), caplog.text
