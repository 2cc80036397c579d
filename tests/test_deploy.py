"""deploy/: the Kubernetes manifests validate against the API schemas, the systemd unit parses and keeps
its contract with the daemon (notify, watchdog, migrate first, hardening), the container file runs as a
non-root user, and every shipped config loads as a complete prod config.

The schemas are the ones bundled in the `kubernetes-validate` wheel; their `$ref`s resolve inside the
package, so nothing is fetched at test time."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from config import Config, load_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S = DEPLOY / "k8s"
UNIT = DEPLOY / "systemd" / "worldservice.service"
# The oldest API the manifests must work on (preStop sleep is on by default from 1.30) and the newest the
# package bundles, so a field removed upstream shows up here first.
K8S_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _by_kind(kind: str) -> dict[str, Any]:
    [doc] = [d for p in MANIFESTS for d in _documents(p) if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_the_kubernetes_schema(path: Path, version: str) -> None:
    # strict: the schemas forbid unknown fields, so a misspelled or misplaced key fails too
    for doc in _documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in MANIFESTS if p.name != "secret.example.yaml")


def test_workload_contract() -> None:
    sts = _by_kind("StatefulSet")
    spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert spec["replicas"] == 1  # one writer per world set
    assert pod["terminationGracePeriodSeconds"] == 45
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 300
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= container["resources"].keys()
    # the PDB and the Service select the daemon, never the migration Job's pod
    selector = spec["selector"]["matchLabels"]
    assert _by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    assert _by_kind("Service")["spec"]["selector"] == selector
    job_labels = _by_kind("Job")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= job_labels.items()


def _secret_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment, with each secretKeyRef filled from secret.example.yaml."""
    secret = _by_kind("Secret")
    env = {}
    for var in container["env"]:
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] == "worldservice-secrets"
        env[var["name"]] = secret["stringData"][ref["key"]]
    return env


def _assert_complete_prod(config: Config) -> None:
    assert config.profile == "prod"
    assert config.prod_problems() == []  # PostgreSQL DSN, Redis, Kafka, JWT with key, issuer and audience
    assert config.server.dsn and config.server.dsn.startswith("postgresql://")
    assert config.server.bind.host == "0.0.0.0" and config.server.bind.port == 8080
    assert config.auto_migrate() is False  # the ExecStartPre / the migration Job migrates


@pytest.mark.parametrize("kind", ["StatefulSet", "Job"])
def test_configmap_plus_secret_env_is_a_complete_prod_config(kind: str, tmp_path: Path) -> None:
    """What the pod sees: the ConfigMap's file, completed by the Secret's variables (names must match
    real settings, or the DSN, Redis URL and JWT secret would be missing)."""
    config_file = tmp_path / "worldservice.yml"
    config_file.write_text(_by_kind("ConfigMap")["data"]["worldservice.yml"])
    [container] = _by_kind(kind)["spec"]["template"]["spec"]["containers"]
    env = _secret_env(container)
    config = load_config(config_file, environ=env)
    _assert_complete_prod(config)
    assert config.server.redis == env["WORLDSERVICE__SERVER__REDIS"]
    assert config.server.auth.jwt is not None
    assert config.server.auth.jwt.secret == env["WORLDSERVICE__SERVER__AUTH__JWT__SECRET"]


def test_prod_example_is_a_complete_prod_config() -> None:
    config = load_config(DEPLOY / "worldservice.prod.example.yml", environ={})
    _assert_complete_prod(config)
    assert config.server.auth.jwt is not None and config.server.auth.jwt.algorithm == "HS256"


def _unit() -> configparser.ConfigParser:
    # systemd allows repeated keys (they accumulate); keep the last, as a reader of single values would
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_keeps_its_contract_with_the_daemon() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30"
    assert service["ExecStartPre"].endswith("worldservice migrate --config /etc/worldservice/worldservice.yml")
    assert service["ExecStart"].endswith("worldservice serve --config /etc/worldservice/worldservice.yml")
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
    # A long dependency outage never exhausts the start limit (the service would stay down after it).
    assert _unit()["Unit"]["StartLimitIntervalSec"] == "0" and 1 <= int(service["RestartSec"]) <= 30
    assert int(service["TimeoutStopSec"]) >= 35  # the daemon's drain takes up to ~30 s
    assert service["User"] == "worldservice" and service["EnvironmentFile"] == "-/etc/worldservice/env"
    hardening = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                 "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
                 "ProtectKernelModules": "yes", "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
                 "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
                 "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "StateDirectory": "worldservice",
                 "CapabilityBoundingSet": "", "AmbientCapabilities": ""}
    assert {key: service.get(key) for key in hardening} == hardening


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """verify also checks that the commands exist; point them at a binary that does, so only what is
    wrong with the unit itself is reported. It exits 0 even on unknown keys or bad values, so the
    diagnostics naming the unit are what fails the test."""
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/worldservice/bin/worldservice", "/bin/true"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, check=False)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr


def test_containerfile_runs_the_cli_as_a_non_root_user() -> None:
    lines = [line.strip() for line in (DEPLOY / "Containerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert sum(line.startswith("FROM ") for line in instructions) >= 2  # multi-stage
    assert any("uv sync --frozen --no-dev" in line for line in instructions)
    [user] = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert user.split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["worldservice"]' in instructions
    assert 'CMD ["serve", "--config", "/etc/worldservice/worldservice.yml"]' in instructions
    assert "EXPOSE 8080" in instructions and "STOPSIGNAL SIGTERM" in instructions


def _acl_commands(*worlds: str) -> list[list[str]]:
    script = DEPLOY / "kafka" / "acls.sh"
    out = subprocess.run(["bash", str(script), *worlds], capture_output=True, text=True, timeout=30, check=True,
                         env={"DRY_RUN": "1", "PATH": "/usr/bin:/bin"})
    return [line.split() for line in out.stdout.splitlines()]


def _arg(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_kafka_acls_confine_each_domain_runtime_to_its_own_queue_namespace() -> None:
    """Seed §4: ``{world_id}.{execution_domain}.<topic>`` namespaces with ACLs, so no cross-domain access;
    the namespace is the one ``execution_domain_updated`` announces."""
    from domain.promotion import queue_namespace

    prefixed = [c for c in _acl_commands("w1", "w2") if "prefixed" in c]
    grants = {(_arg(c, "--allow-principal"), _arg(c, "--topic")) for c in prefixed}
    expected = {(f"User:runtime-{d}", f"{queue_namespace(w, d)}.") for w in ("w1", "w2")
                for d in ("backtest", "dryrun", "live", "shadow")}
    assert grants == expected


def test_kafka_acls_cover_every_configured_event_topic() -> None:
    from config import ControlBusConfig

    written = {_arg(c, "--topic") for c in _acl_commands("w1")
               if _arg(c, "--allow-principal") == "User:worldservice" and _arg(c, "--operation") == "Write"}
    assert set(ControlBusConfig().topics.values()) <= written
