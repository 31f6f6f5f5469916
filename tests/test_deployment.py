"""The deployment files hold together: every command, option, environment variable, path and
port that deploy/Dockerfile, deploy/compose.yaml (with its scripts and federation file) and
the Kubernetes manifests of deploy/k8s use exists in the code and in the image, each
service mounts only its own private key, and each federation file agrees with the nodes it
names. With a container engine, the image is built and run (`packaging`)."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from connectors.settings import DEFAULT_GATEWAY_ISSUER, ConnectorSettings
from gateway.federation import FederationFile
from gateway.settings import GatewaySettings
from policies.loader import load_node_layer
from schema.wire import HEALTH_PATH, READY_PATH
from tessera.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
IMAGE_USER = "10001"
PROBES = {HEALTH_PATH, READY_PATH}
# Where the services' files live in the image and its volumes.
CONFIG_ROOT = PurePosixPath("/etc/tessera")


# -- what the code offers --------------------------------------------------------------------
def known_variables() -> set[str]:
    """The environment variables the code reads: the services' settings and OpenTelemetry's."""
    found: set[str] = set()
    for source, pattern in (("oversight/tracing.py", r"OTEL_[A-Z0-9_]+"),):
        found |= set(re.findall(pattern, (ROOT / source).read_text()))
    # One variable per field of each service's settings.
    return found | set(GatewaySettings.variables()) | set(ConnectorSettings.variables())


def tessera_accepts(args: list[str]) -> argparse.Namespace:
    """`tessera ARGS` parses: the command and every option exist."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"`tessera {shlex.join(args)}` is refused: {errors.getvalue().strip()}")


def script_commands(path: Path) -> list[list[str]]:
    """The `tessera ...` commands of a shell script, inside `$(...)` too; `"$VAR"` stands in
    as a number (the scripts only use variables for counts)."""
    commands: list[list[str]] = []
    for line in path.read_text().splitlines():
        for match in re.finditer(r"(?:^\s*|\$\()(tessera [^)]*)", line):
            text = re.sub(r'"?\$\{?[A-Z_]+(?::-[^}]*)?\}?"?', "1000", match.group(1))
            commands.append(shlex.split(text)[1:])
    return commands


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def under(path: PurePosixPath, mounts: Mapping[str, str]) -> str | None:
    """The source of the mount `path` lies under (the longest mount target), if any."""
    best = None
    for target, source in mounts.items():
        inside = path == PurePosixPath(target) or PurePosixPath(target) in path.parents
        if inside and (best is None or len(target) > len(best[0])):
            best = (target, source)
    return None if best is None else best[1]


# -- the Dockerfile --------------------------------------------------------------------------
def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments), continuation lines joined, comments left out."""
    joined = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    steps = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            steps.append((keyword.upper(), rest.strip()))
    return steps


def test_the_image_copies_every_package_and_what_the_build_reads() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set()
    for keyword, rest in dockerfile():
        if keyword == "COPY" and not rest.startswith("--from"):
            *sources, _ = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
                copied.add(source)
    assert packages <= copied, f"not copied: {sorted(packages - copied)}"
    # The wheel's metadata and pins, and the target of the examples link in the package.
    link = (ROOT / "tessera" / "examples").resolve().relative_to(ROOT)
    assert {project["project"]["readme"], "constraints.txt", "pyproject.toml", str(link)} <= copied


def test_the_image_is_built_from_the_wheel_and_runs_tessera_unprivileged() -> None:
    steps = dockerfile()
    runs = " ".join(rest for keyword, rest in steps if keyword == "RUN")
    assert "pip wheel" in runs
    assert "-c constraints.txt" in runs
    assert "--uid 10001" in runs
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users[-1].split(":")[0] == IMAGE_USER
    assert [rest for keyword, rest in steps if keyword == "ENTRYPOINT"] == ['["tessera"]']
    exposed = {int(p) for keyword, rest in steps if keyword == "EXPOSE" for p in rest.split()}
    defaults = {cls.model_fields["port"].default for cls in (GatewaySettings, ConnectorSettings)}
    assert defaults <= exposed


# -- compose ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def tessera_services(compose: Mapping[str, Any]) -> dict[str, Any]:
    image = compose["services"]["gateway"]["image"]
    return {n: s for n, s in compose["services"].items() if s.get("image") == image}


def long_running(compose: Mapping[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in tessera_services(compose).items() if s.get("restart") != "no"}


def mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """Mount target -> source (a named volume or a ./path beside compose.yaml)."""
    found = {}
    for entry in service.get("volumes", []):
        source, target, *_ = entry.split(":")
        found[target] = source
    return found


def port_of(args: list[str]) -> int:
    port = option(args, "--port")
    assert port is not None, f"{args} sets no --port"
    return int(port)


def healthcheck_url(check: Mapping[str, Any]) -> tuple[int, str]:
    (url,) = re.findall(r"http://127\.0\.0\.1:\d+/\w+", " ".join(check["test"]))
    parts = urlsplit(url)
    assert parts.port is not None
    return parts.port, parts.path


def test_every_command_and_script_of_compose_is_tessera_s(compose: dict[str, Any]) -> None:
    for name, service in tessera_services(compose).items():
        if service.get("command"):
            tessera_accepts(service["command"])
        entrypoint = service.get("entrypoint")
        if entrypoint:
            script = PurePosixPath(entrypoint[-1])
            host = mounts(service)[str(script)]
            commands = script_commands(DEPLOY / host)
            assert commands, f"{name}: {host} runs no tessera command"
            for args in commands:
                tessera_accepts(args)


def test_every_variable_compose_sets_is_read_by_the_code(compose: dict[str, Any]) -> None:
    known = known_variables()
    for name, service in tessera_services(compose).items():
        unknown = set(service.get("environment", {})) - known - {"TESSERA_DEMO_PERSONS"}
        assert not unknown, f"{name}: {sorted(unknown)}"


def test_paths_ports_and_health_checks_agree(compose: dict[str, Any]) -> None:
    for name, service in long_running(compose).items():
        args = service["command"]
        port = port_of(args)
        assert healthcheck_url(service["healthcheck"]) in {(port, p) for p in PROBES}, name
        for published in service.get("ports", []):
            assert int(str(published).rsplit(":", 1)[1]) == port, name
        held = mounts(service)
        for variable, value in service.get("environment", {}).items():
            for path in re.findall(r"(?:^|=)(/[\w/.-]+)", str(value)):
                assert under(PurePosixPath(path), held), f"{name}: {variable}={path} is no mount"
        for source in held.values():
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"


def test_each_private_key_is_mounted_by_its_own_service_only(compose: dict[str, Any]) -> None:
    holders: dict[str, list[str]] = {}
    for name, service in long_running(compose).items():
        for source in mounts(service).values():
            holders.setdefault(source, []).append(name)
    key_volumes = [v for v in compose["volumes"] if v.endswith("-key")]
    assert key_volumes
    for volume in key_volumes:
        assert len(holders.get(volume, [])) == 1, f"{volume} is mounted by {holders.get(volume)}"
    # The issuers' private keys (identity provider, HDABs) reach no running service.
    assert "issuer-keys" not in holders
    # ./keys, the whole folder of a host, is mounted nowhere.
    assert not any(source.rstrip("/") == "./keys" for source in holders)
    for name, service in long_running(compose).items():
        for variable, value in service.get("environment", {}).items():
            if str(value).endswith(".key.pem"):
                volume = under(PurePosixPath(value), mounts(service))
                assert holders[volume] == [name], f"{name}: {variable}"


def test_the_start_is_gated_on_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    gateway = services["gateway"]["depends_on"]
    connectors = [n for n in long_running(compose) if n.startswith("connector-")]
    assert connectors
    for connector in connectors:
        assert gateway[connector] == {"condition": "service_healthy"}
        needs = services[connector]["depends_on"]
        assert needs["setup"] == {"condition": "service_completed_successfully"}
        assert needs["postgres"] == needs["redis"] == {"condition": "service_healthy"}
    for name, service in services.items():
        needs = service.get("depends_on") or {}
        for needed, how in ({n: None for n in needs} if isinstance(needs, list) else needs).items():
            if isinstance(how, dict) and how["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{name} waits on {needed}"


def test_redis_postgres_and_tracing_are_wired(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "postgres", "otel-collector", "jaeger"} <= set(services)
    for name, service in long_running(compose).items():
        env = service["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318", name
        audit = next(v for k, v in env.items() if k.endswith("_AUDIT_DB"))
        assert audit.startswith("postgresql://"), name
        assert "@postgres:5432/" in audit, name
        redis = next(v for k, v in env.items() if k.endswith("_REDIS_URL"))
        assert redis.startswith("redis://redis:6379/"), name
    collector = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert collector["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"


# -- a federation file against the nodes a deployment runs ----------------------------------
def connector_identity(env: Mapping[str, str]) -> dict[str, Any]:
    """What a connector with this environment says it is (`NodeIdentity`), keys by kid."""
    jurisdiction = env["TESSERA_CONNECTOR_JURISDICTION"]
    issuer = env.get("TESSERA_CONNECTOR_GATEWAY_ISSUER", DEFAULT_GATEWAY_ISSUER)
    keys = dict(item.split("=", 1) for item in env["TESSERA_CONNECTOR_GATEWAY_KEYS"].split(","))
    return {
        "node_id": env.get("TESSERA_CONNECTOR_NODE_ID", f"tessera-node-{jurisdiction.lower()}"),
        "jurisdiction": jurisdiction,
        "gateway_issuer": issuer,
        "approval_audience": env.get("TESSERA_CONNECTOR_APPROVAL_AUDIENCE", issuer),
        "gateway_keys": keys,
        "hdab_issuer": env["TESSERA_CONNECTOR_HDAB_ISSUER"],
    }


def check_federation(
    path: Path,
    gateway_mounts: Mapping[str, str],
    nodes: Mapping[str, tuple[int, Mapping[str, str]]],
) -> Iterator[str]:
    """Each disagreement between a federation file and the nodes by host name."""
    federation = FederationFile.model_validate(tomllib.loads(path.read_text()))
    where = CONFIG_ROOT  # the file is mounted at /etc/tessera/federation.toml
    for key in [federation.gateway.signing_key] + [
        i.public_key for i in federation.issuers if i.public_key is not None
    ]:
        if under(where / key.as_posix(), gateway_mounts) is None:
            yield f"{key} is not in a volume the gateway mounts"
    for node in federation.nodes:
        parts = urlsplit(node.url)
        if parts.hostname not in nodes:
            yield f"{node.url}: no such service"
            continue
        port, env = nodes[parts.hostname]
        if parts.port != port:
            yield f"{node.url}: the service listens on {port}"
        identity = connector_identity(env)
        for field, expected in (
            ("node_id", node.node_id),
            ("jurisdiction", node.jurisdiction.value),
            ("gateway_issuer", federation.gateway.id),
            ("approval_audience", federation.gateway.id),
        ):
            if identity[field] != expected:
                yield f"{node.url}: {field} {identity[field]!r}, the file says {expected!r}"
        if federation.gateway.signing_kid not in identity["gateway_keys"]:
            yield f"{node.url} does not trust {federation.gateway.signing_kid!r}"
        hdabs = {i.iss for i in federation.issuers if i.jurisdictions == [node.jurisdiction]}
        if identity["hdab_issuer"] not in hdabs:
            yield f"{node.url}: HDAB {identity['hdab_issuer']!r}, the gateway trusts {hdabs}"


def test_the_compose_federation_file_agrees_with_its_connectors(
    compose: dict[str, Any],
) -> None:
    services = long_running(compose)
    nodes = {
        name: (port_of(s["command"]), s["environment"])
        for name, s in services.items()
        if s["command"][0] == "connector"
    }
    gateway = services["gateway"]
    federation = DEPLOY / mounts(gateway)["/etc/tessera/federation.toml"]
    assert list(check_federation(federation, mounts(gateway), nodes)) == []
    # Every key file named is one the set-up writes.
    setup = (DEPLOY / "setup.sh").read_text()
    for key in re.findall(r"[\w-]+\.(?:key|pub)\.pem", federation.read_text()):
        assert key.split(".")[0] in setup


# -- Kubernetes ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def manifests(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        doc
        for resource in kustomization["resources"]
        for doc in yaml.safe_load_all((K8S / resource).read_text())
        if doc
    ]


def generated(kustomization: Mapping[str, Any], kind: str) -> dict[str, list[str]]:
    """Name -> the files it is made of."""
    return {
        g["name"]: [f.split("=")[-1] for f in g.get("files", []) + g.get("envs", [])]
        for g in kustomization.get(kind, [])
    }


def deployments(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}


def test_the_generators_read_files_that_exist_or_the_readme_says_to_make(
    kustomization: dict[str, Any],
) -> None:
    readme = (ROOT / "README.md").read_text()
    for kind in ("configMapGenerator", "secretGenerator"):
        for name, files in generated(kustomization, kind).items():
            for file in files:
                if file.startswith(("keys/", "secrets/")):
                    # Made by the operator, never committed: the README says how.
                    stem = PurePosixPath(file).name.split(".")[0]
                    assert f"deploy/k8s/{file.split('/')[0]}" in readme, (name, file)
                    assert stem in readme, (name, file)
                else:
                    assert (K8S / file).is_file(), (name, file)


def test_every_deployment_is_probed_limited_and_wired(
    manifests: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    known = known_variables()
    config_maps = generated(kustomization, "configMapGenerator")
    secrets = generated(kustomization, "secretGenerator")
    services = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Service"}
    claims = {m["metadata"]["name"] for m in manifests if m["kind"] == "PersistentVolumeClaim"}
    for name, deployment in deployments(manifests).items():
        spec = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, name
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, name
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        for container in spec["containers"]:
            limits = container["resources"]["limits"]
            assert {"cpu", "memory"} <= set(limits), name
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            for mount in container["volumeMounts"]:
                assert mount["name"] in volumes, (name, mount)
            service = services[name]
            assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports, name
            if not container["image"].startswith("tessera:"):
                continue
            assert spec["securityContext"]["runAsUser"] == int(IMAGE_USER)
            args = container["args"]
            tessera_accepts(args)
            assert set(ports.values()) == {port_of(args)}, name
            for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = container[kind]["httpGet"]
                assert probe["path"] in PROBES, (name, kind)
                assert probe["port"] in ports, (name, kind)
            assert container["readinessProbe"]["httpGet"]["path"] == READY_PATH
            assert container["livenessProbe"]["httpGet"]["path"] == HEALTH_PATH
            for entry in container["env"]:
                assert entry["name"] in known, (name, entry["name"])
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] in secrets, (name, entry["name"])
            held = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            for entry in container["env"]:
                for path in re.findall(r"(?:^|=)(/[\w/.-]+)", entry.get("value", "")):
                    assert under(PurePosixPath(path), held), (name, entry["name"], path)
            # Its own private key only: each key Secret is mounted by one Deployment.
            for volume in volumes.values():
                secret = volume.get("secret", {}).get("secretName")
                if secret is not None:
                    users = [
                        d
                        for d, other in deployments(manifests).items()
                        if any(
                            v.get("secret", {}).get("secretName") == secret
                            for v in other["spec"]["template"]["spec"]["volumes"]
                        )
                    ]
                    assert users == [name], (secret, users)


def test_the_k8s_federation_file_agrees_with_its_connectors(
    manifests: list[dict[str, Any]],
) -> None:
    found = deployments(manifests)
    gateway = found["tessera-gateway"]["spec"]["template"]["spec"]
    (container,) = gateway["containers"]
    volumes = {v["name"]: v for v in gateway["volumes"]}
    gateway_mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    federation = volumes[gateway_mounts["/etc/tessera/federation.toml"]]
    assert federation["configMap"]["name"] == "tessera-federation"
    nodes = {}
    for name, deployment in found.items():
        (node,) = deployment["spec"]["template"]["spec"]["containers"]
        if node["args"][0] == "connector":
            env = {e["name"]: e.get("value", "") for e in node["env"]}
            nodes[name] = (port_of(node["args"]), env)
            policy = env["TESSERA_CONNECTOR_NODE_POLICY"]
            layer = load_node_layer(
                K8S / f"node-{env['TESSERA_CONNECTOR_JURISDICTION'].lower()}.toml"
            )
            assert layer.node is not None
            assert layer.node.id == connector_identity(env)["node_id"], policy
    assert nodes
    problems = check_federation(K8S / "federation.toml", gateway_mounts, nodes)
    assert list(problems) == []


# -- the image, built and run ----------------------------------------------------------------
def container_engine() -> str | None:
    """`docker` when a daemon answers, else why not."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        answered = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return docker if answered.returncode == 0 and answered.stdout.strip() else None


@pytest.mark.packaging
def test_the_image_builds_and_runs_the_demo(tmp_path: Path) -> None:
    docker = container_engine()
    if docker is None:
        pytest.skip("no container engine: `docker info` finds no running daemon")
    tag = f"tessera:test-{tmp_path.name.lower()}"
    built = subprocess.run(
        [docker, "build", "-f", str(DEPLOY / "Dockerfile"), "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if built.returncode != 0 and "pull" in built.stderr.lower():
        pytest.skip(f"the base image cannot be pulled here: {built.stderr[-500:]}")
    assert built.returncode == 0, built.stderr[-3000:]
    try:
        ran = subprocess.run(
            [docker, "run", "--rm", tag, "demo", "--smoke", "--persons", "2000"],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        assert "01_diabetes_women_40_69.graphql" in ran.stdout
        user = subprocess.run(
            [docker, "run", "--rm", "--entrypoint", "id", tag, "-u"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert user.stdout.strip() == IMAGE_USER
    finally:
        subprocess.run([docker, "image", "rm", "-f", tag], capture_output=True, check=False)
