"""The files in deploy/ checked offline: the systemd unit (systemd-analyze verify), the Dockerfile
(parsed: Docker cannot run here, so nothing is built), the Kubernetes manifests (kubernetes-validate
with its bundled schemas, strict), and the configuration each one hands the gateway."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.cli import parser
from tests.integration.test_cli import _env

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "systemd" / "gateway.service"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30.0"  # the oldest release still supported by the big clouds when this was written


# --- systemd -----------------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_is_notify_hardened_and_reloads_with_sighup() -> None:
    s = unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["WatchdogSec"] == ["30s"]
    for key, value in [("DynamicUser", "yes"), ("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                       ("CapabilityBoundingSet", ""), ("AmbientCapabilities", ""), ("PrivateTmp", "yes"),
                       ("StateDirectory", "gateway"), ("StateDirectoryMode", "0700"), ("UMask", "0077")]:
        assert s[key] == [value], key
    assert "User" not in s and "Group" not in s  # DynamicUser allocates them
    argv = shlex.split(s["ExecStart"][0])
    assert argv[0] == "/opt/gateway/.venv/bin/gateway"
    args = parser().parse_args(argv[1:])  # the command line our own CLI accepts
    assert args.command == "run" and args.config == "/etc/gateway/gateway.toml"


async def _run(*argv: str, timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*argv, env=_env(), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
async def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """verify checks that ExecStart's binary exists. /opt/gateway is where the unit's comment installs
    it, not on this machine: the copy verified runs this checkout's console script instead, and
    the unchanged unit must fail on that line alone."""
    script = Path(sys.executable).with_name("gateway")
    assert script.is_file()
    copy = tmp_path / "gateway.service"
    copy.write_text(UNIT.read_text().replace("/opt/gateway/.venv/bin/gateway", str(script)))
    code, out = await _run("systemd-analyze", "verify", str(copy))
    assert (code, out) == (0, "")
    code, out = await _run("systemd-analyze", "verify", str(UNIT))
    if Path("/opt/gateway/.venv/bin/gateway").exists():
        assert (code, out) == (0, "")
    else:
        assert code != 0 and out.strip().splitlines() == [
            "gateway.service: Command /opt/gateway/.venv/bin/gateway is not executable: No such file or directory"]


# --- Dockerfile --------------------------------------------------------------------------------


def dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def test_dockerfile_properties() -> None:
    steps = dockerfile((DEPLOY / "Dockerfile").read_text())
    froms = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(froms) >= 2 and " AS " in steps[froms[0]][1].upper()  # multi-stage
    final = steps[froms[-1]:]
    words = dict(final)
    assert any(w == "COPY" and a.startswith("--from=build ") for w, a in final)
    assert "pip" not in " ".join(a for w, a in final if w == "RUN")  # installed in the build stage only
    user = words["USER"].split(":")[0]
    assert user not in ("root", "0") and user.isdigit()  # numeric: runAsNonRoot can check it
    assert json.loads(words["VOLUME"]) == ["/var/lib/gateway"]
    assert json.loads(words["ENTRYPOINT"]) == ["gateway"]  # exec form: SIGTERM reaches the gateway
    assert json.loads(words["CMD"]) == ["run"]
    assert words.get("STOPSIGNAL", "SIGTERM") == "SIGTERM"
    options, _, command = words["HEALTHCHECK"].partition(" CMD ")
    probe = json.loads(command)
    assert probe[:2] == ["python", "-c"] and "urllib.request" in probe[2] and "/readyz" in probe[2]
    assert "curl" not in words["HEALTHCHECK"] and "--timeout=" in options


async def test_dockerfile_healthcheck_probe_against_a_gateway(make_gateway: Any) -> None:
    """The HEALTHCHECK's own Python line, run against a gateway: exit 0 when ready, 1 when not."""
    steps = dict(dockerfile((DEPLOY / "Dockerfile").read_text()).__reversed__())
    probe = json.loads(steps["HEALTHCHECK"].partition(" CMD ")[2])
    gateway = await make_gateway()
    env = {**_env(), "GATEWAY_HTTP__PORT": str(gateway.http_port)}

    async def run() -> int:
        proc = await asyncio.create_subprocess_exec(sys.executable, *probe[1:], env=env,
                                                    stderr=asyncio.subprocess.DEVNULL)
        return await asyncio.wait_for(proc.wait(), 30)

    assert await run() == 0
    gateway.proxy.carriers.clear()  # as when the carrier link is down: /readyz 503
    assert await run() == 1


# --- Kubernetes --------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> dict[str, Any]:
    [doc] = [d for d in manifests() if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("doc", manifests(), ids=lambda d: d["kind"])
def test_manifest_is_valid_offline(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_validation_can_fail() -> None:
    doc = by_kind("Deployment")
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_deployment_probes_drain_and_references() -> None:
    deployment, config = by_kind("Deployment"), by_kind("ConfigMap")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    toml = tomllib.loads(config["data"]["gateway.toml"])
    assert ports == {"smpp": toml["listen"]["port"], "http": toml["http"]["port"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # the grace period covers the preStop pause, both drain phases and the carrier unbind (2 s)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["python", "-c"] and command[2].startswith("import time; time.sleep(")
    pause = float(command[2].split("sleep(")[1].rstrip(")"))
    assert pod["terminationGracePeriodSeconds"] >= pause + 2 * toml["drain_timeout"] + 2.0 + 5
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"]
    # every Secret key the pod reads exists, and the Service and PDB select these pods
    secret = by_kind("Secret")
    keys = set(secret["stringData"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert volumes["config"]["configMap"]["name"] == config["metadata"]["name"]
    for env in container["env"]:
        ref = env["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in keys
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert by_kind("Service")["spec"]["selector"].items() <= labels.items()
    pdb = by_kind("PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["minAvailable"] < deployment["spec"]["replicas"]


async def test_configmap_toml_passes_check_config(tmp_path: Path) -> None:
    """The ConfigMap's file with the Secret's files where the pod mounts them: `check-config --strict`."""
    text = by_kind("ConfigMap")["data"]["gateway.toml"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for key, value in by_kind("Secret")["stringData"].items():
        (secrets / key).write_text(value + "\n")
    config = tmp_path / "gateway.toml"
    config.write_text(text.replace("/run/secrets/gateway/", f"{secrets}/"))
    url = by_kind("Secret")["stringData"]["database-url"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "check-config", "--strict", "--config", str(config),
        env={**_env(), "GATEWAY_DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    effective = json.loads(out)
    assert effective["accounts"][0]["system_id"] == "acme"
    assert "change-me" not in out.decode() and "s3cret" not in out.decode()
