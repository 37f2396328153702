"""docker-compose.yml, the Dockerfile and deploy/kubernetes/ checked offline: files parse,
every command they run exists in this package and accepts the options given, manifests
validate against the Kubernetes schemas (kubernetes-validate, no cluster needed)."""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from conftest import VENV_BIN, nd_command

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
PACKAGE_COMMANDS = {"nd-hub", "nd-sniff", "nd-print", "nd-web", "nd-hubstatus",
                    "nd-hubdetails", "nd-cook", "nd-dump", "nd-demo"}


@lru_cache(maxsize=None)
def _help(command: str) -> str:
    assert command in PACKAGE_COMMANDS, f"{command} is not one of the package's commands"
    exe = VENV_BIN / command
    cmd = [str(exe)] if exe.exists() else nd_command(command)
    r = subprocess.run(cmd + ["--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _check_command(argv: list[str]) -> None:
    """The command is ours and knows every option it is given."""
    text = _help(argv[0])
    for arg in argv[1:]:
        if arg.startswith("-") and not re.fullmatch(r"-?\d+(\.\d+)?", arg):
            option = arg.split("=", 1)[0]
            assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", text), \
                f"{argv[0]} has no option {option}"


def _compose_defaults(value: str) -> str:
    """${VAR:-default} -> default, as compose does when VAR is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def _compose() -> dict[str, Any]:
    with open(ROOT / "docker-compose.yml") as fh:
        return yaml.safe_load(fh)


def test_compose_has_the_whole_system():
    services = _compose()["services"]
    assert {"hub", "nats", "kitchen", "print", "web"} <= set(services)
    kitchen = services["kitchen"]
    assert kitchen["network_mode"] == "host"
    assert {"NET_RAW", "NET_ADMIN"} <= set(kitchen["cap_add"])
    assert "-js" in services["nats"]["command"]
    assert services["nats"]["image"].startswith("nats:")
    hub = services["hub"]["command"]
    assert hub[hub.index("--backplane") + 1] == "nats://nats:4222"
    assert hub[hub.index("--address") + 1] == "0.0.0.0"
    # the kitchen's filter is configurable from the environment
    assert any("${ND_FILTER" in str(a) for a in kitchen["command"])
    web = services["web"]["command"]
    assert web[web.index("--port") + 1] == "11350" and "--address" in web


@pytest.mark.parametrize("service", ["hub", "kitchen", "print", "web"])
def test_compose_commands_exist_in_the_package(service):
    svc = _compose()["services"][service]
    assert svc.get("build") == "." and svc["image"] == "netdumplings:latest"
    _check_command([_compose_defaults(str(a)) for a in svc["command"]])


def test_dockerfile_builds_from_the_package():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "libpcap0.8" in text and "tcpdump" in text
    assert re.search(r"pip install [^\n]*'\.\[nats\]'", text)
    for src in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for name in src.split():
            assert (ROOT / name).exists(), f"Dockerfile copies missing {name}"
    # the image's default command is one of ours too
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd is not None
    _check_command(yaml.safe_load(cmd.group(1)))


def _manifests() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        with open(path) as fh:
            docs += [(path, d) for d in yaml.safe_load_all(fh) if d]
    return docs


def test_kubernetes_manifests_validate_offline():
    exe = VENV_BIN / "kubernetes-validate"
    if not exe.exists():
        pytest.skip("kubernetes-validate not installed (test extras)")
    files = sorted(str(p) for p in K8S.glob("*.yaml"))
    assert len(files) >= 5
    r = subprocess.run([str(exe), "--strict", "--quiet", *files], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    # and a broken manifest is caught: the check can fail
    bad = K8S.parent / ".broken-test.yaml"
    try:
        bad.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
                       "spec: {replicas: many}\n")
        r = subprocess.run([str(exe), "--strict", "--quiet", str(bad)], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode != 0
    finally:
        bad.unlink(missing_ok=True)


def _by_kind() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for _, d in _manifests()}


def test_kubernetes_topology():
    docs = _by_kind()
    ds = docs[("DaemonSet", "nd-kitchen")]["spec"]["template"]["spec"]
    assert ds["hostNetwork"] is True and ds["dnsPolicy"] == "ClusterFirstWithHostNet"
    caps = ds["containers"][0]["securityContext"]["capabilities"]["add"]
    assert {"NET_RAW", "NET_ADMIN"} <= set(caps)
    env = {e["name"]: e.get("valueFrom", {}) for e in ds["containers"][0]["env"]}
    assert "configMapKeyRef" in env["ND_INTERFACE"] and "configMapKeyRef" in env["ND_FILTER"]
    hub = docs[("Deployment", "nd-hub")]
    assert hub["spec"]["replicas"] > 1
    assert ("Service", "nd-hub") in docs and ("Service", "nats") in docs
    assert ("Deployment", "nd-web") in docs and ("Service", "nd-web") in docs
    assert ("StatefulSet", "nats") in docs or ("Deployment", "nats") in docs
    args = hub["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--backplane") + 1] == "nats://nats:4222"


def test_kubernetes_references_resolve_and_commands_exist():
    """Every Secret/ConfigMap key a pod reads is defined; every container runs one of our
    commands with options it has; every $(VAR) in args is an env var of the container."""
    docs = _by_kind()
    data = {("Secret", n): set(d.get("stringData", {})) | set(d.get("data", {}))
            for (k, n), d in docs.items() if k == "Secret"}
    data |= {("ConfigMap", n): set(d.get("data", {}))
             for (k, n), d in docs.items() if k == "ConfigMap"}
    pods = 0
    for (kind, name), d in docs.items():
        if kind not in ("Deployment", "DaemonSet", "StatefulSet"):
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            env = {}
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                for key, k8s_kind in (("secretKeyRef", "Secret"),
                                      ("configMapKeyRef", "ConfigMap")):
                    if key in ref:
                        assert ref[key]["key"] in data[(k8s_kind, ref[key]["name"])], \
                            (name, e["name"])
                env[e["name"]] = e
            for var in re.findall(r"\$\((\w+)\)", " ".join(c.get("args", []))):
                assert var in env, (name, var)
            if c["image"].startswith("netdumplings"):
                pods += 1
                _check_command([a if "$(" not in a else "x" for a in c["args"]])
    assert pods == 3  # hub, kitchen, web
    # tokens reach the hubs and kitchens from the Secret
    hub_env = {e["name"] for e in docs[("Deployment", "nd-hub")]["spec"]["template"]["spec"]
               ["containers"][0]["env"]}
    assert {"ND_KITCHEN_TOKEN", "ND_EATER_TOKEN"} <= hub_env
