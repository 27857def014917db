"""deploy/kubernetes/cluster (fakewatch on a KubeRay RayService) and
deploy/prometheus/cluster.yml, checked without a cluster, an operator or a network.

- every file parses, is in the kustomization, and ``kubectl kustomize`` builds it (where
  kubectl is installed);
- the core objects (Namespace, ConfigMap, PersistentVolumeClaims, Deployment, Services)
  against the Kubernetes schemas of ``kubernetes-validate``, strictly, and the
  RayService's head and worker pod templates the same way, wrapped in Pod documents;
  the RayService's own fields against the KubeRay API (``ray.io/v1``) by name;
- the ``serveConfigV2`` with Ray Serve's own ``ServeDeploySchema``, and its import path
  called with its args and the ConfigMap (skipped without ray; nothing is deployed);
- the ConfigMap's fakewatch configuration with ``load_cluster_config`` and the environment each
  Ray container gets;
- the wiring: the Segmenter deployment against ``cluster:``, the custom resources
  (``fakewatch_front`` on the head, ``stream_slots`` on the CPU workers), the Service and
  the monitors against the pods' labels and ports, Redis against ``cluster.redis_url``
  and the GCS fault tolerance address, mounts against the ConfigMap, Secret and volume;
- ``promtool check config`` on deploy/prometheus/cluster.yml, and yamllint.

What KubeRay adds to the pods (its labels, probes it injects, the autoscaler sidecar) is
taken from its source (ray-operator/controllers/ray/common/pod.go), not observed.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import secrets
import shutil
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from fakewatch.cluster.config import ClusterServiceConfig, load_cluster_config
from fakewatch.stream.metrics import PipelineMetrics
from tests.deploy.test_manifests import (
    KUBERNETES,
    YAMLLINT_CONFIG,
    _assert_state_on_volume,
    _check_webhook_example,
    _kustomization,
    _kustomize,
    _load_all,
    _need,
    _validate,
)
from tests.support.prometheus_server import promtool

REPO = Path(__file__).resolve().parents[2]
CLUSTER = KUBERNETES / "cluster"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "cluster.yml"
NAMESPACE = "fakewatch"
STATE = PurePosixPath("/var/lib/fakewatch")
API_PORT = 8088
RAY_METRICS_PORT = 8080
CORE_KINDS = {"Namespace", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"}
# a label KubeRay puts on every Ray pod (labelPod in pod.go), and the keys of those it
# sets, which a template must leave alone (its head Service selects by some of them)
KUBERAY_LABELS = {"ray.io/is-ray-node": "yes"}
RESERVED_LABELS = ("ray.io/", "app.kubernetes.io/name", "app.kubernetes.io/created-by")
# the fields of KubeRay's ray.io/v1 API that these manifests may use (docs/reference/api.md)
RAYSERVICE_FIELDS = {
    "serveService", "upgradeStrategy", "serveConfigV2", "rayClusterConfig",
    "excludeHeadPodFromServeSvc",
}  # fmt: skip
RAYCLUSTER_FIELDS = {
    "suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations",
    "enableInTreeAutoscaling", "gcsFaultToleranceOptions", "headGroupSpec", "rayVersion",
    "workerGroupSpecs",
}  # fmt: skip
HEAD_FIELDS = {"template", "headService", "enableIngress", "rayStartParams", "serviceType"}
WORKER_FIELDS = {
    "suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds",
    "rayStartParams", "template", "scaleStrategy", "numOfHosts",
}  # fmt: skip
AUTOSCALER_FIELDS = {
    "resources", "image", "imagePullPolicy", "securityContext", "idleTimeoutSeconds",
    "upscalingMode", "version", "env", "envFrom", "volumeMounts",
}  # fmt: skip
GCS_FT_FIELDS = {"redisUsername", "redisPassword", "externalStorageNamespace", "redisAddress"}


# ---------------------------------------------------------------- the files


@functools.cache
def _objects() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object of the kustomization, by (kind, name)."""
    objects = {}
    for entry in _kustomization(CLUSTER)["resources"]:
        for doc in _load_all(CLUSTER / entry):
            objects[doc["kind"], doc["metadata"]["name"]] = doc
    return objects


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [o for (k, n), o in _objects().items() if k == kind and name in (None, n)]
    return found


def test_every_file_parses_and_is_applied() -> None:
    resources = _kustomization(CLUSTER)["resources"]
    files = sorted(p.name for p in CLUSTER.glob("*.yaml") if p.name != "kustomization.yaml")
    assert files == sorted(resources), "every manifest is in the kustomization, and only those"
    for name in files:
        for doc in _load_all(CLUSTER / name):
            if doc["kind"] != "Namespace":
                assert doc["metadata"].get("namespace") == NAMESPACE, name
    kinds = {kind for kind, _ in _objects()}
    assert kinds == CORE_KINDS | {"RayService", "PodMonitor", "ScrapeConfig"}
    # the same Namespace as the single-machine manifests (Pod Security `restricted`)
    assert _one("Namespace") == yaml.safe_load((KUBERNETES / "base/namespace.yaml").read_text())


def test_core_objects_match_the_kubernetes_schema() -> None:
    for (kind, _), document in _objects().items():
        if kind in CORE_KINDS:
            _validate(document, "deploy/kubernetes/cluster")


def test_kustomize_build() -> None:
    objects = _kustomize(CLUSTER)
    assert len(objects) == len(_objects())
    for document in objects:
        assert document["metadata"].get("namespace", NAMESPACE) == NAMESPACE
        if document["kind"] in CORE_KINDS:
            _validate(document, "kubectl kustomize deploy/kubernetes/cluster")
    (service,) = [o for o in objects if o["kind"] == "RayService"]
    images = {
        group: container["image"]
        for group, template in _templates(service).items()
        for container in template["spec"]["containers"]
    }
    images_set = {entry["newName"] + ":" + entry["newTag"] for entry in _images()}
    assert set(images.values()) == images_set, "kustomize sets the images of the RayService"
    assert images["head"].endswith("-cpu-cluster") and images["shards"] == images["head"]
    assert images["segmenter"].endswith("-gpu-cluster")


def _images() -> list[dict[str, str]]:
    images: list[dict[str, str]] = _kustomization(CLUSTER)["images"]
    return images


def test_yamllint() -> None:
    if importlib.util.find_spec("yamllint") is None:
        _need("yamllint", "no yamllint package")
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(YAMLLINT_CONFIG)
    problems = [
        f"{path.relative_to(REPO)}:{problem.line}: {problem}"
        for path in [*sorted(CLUSTER.glob("*.yaml")), PROMETHEUS_CONFIG]
        for problem in linter.run(path.read_text(), config, str(path))
    ]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- the RayService


def _rayservice() -> dict[str, Any]:
    return _one("RayService")


def _cluster_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _rayservice()["spec"]["rayClusterConfig"]
    return spec


def _groups() -> dict[str, dict[str, Any]]:
    """The head group (``head``) and each worker group by name."""
    spec = _cluster_spec()
    groups = {"head": spec["headGroupSpec"]}
    groups.update({group["groupName"]: group for group in spec["workerGroupSpecs"]})
    return groups


def _templates(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = service["spec"]["rayClusterConfig"]
    templates = {"head": spec["headGroupSpec"]["template"]}
    for group in spec["workerGroupSpecs"]:
        templates[group["groupName"]] = group["template"]
    return templates


def _ray_container(group: str) -> dict[str, Any]:
    """The Ray container: KubeRay takes the first one."""
    container: dict[str, Any] = _groups()[group]["template"]["spec"]["containers"][0]
    return container


def _pod_labels(group: str) -> dict[str, str]:
    """The labels a pod of ``group`` gets: its template's and KubeRay's own."""
    node_type, group_label = ("head", "headgroup") if group == "head" else ("worker", group)
    labels = _groups()[group]["template"]["metadata"]["labels"]
    own = {"ray.io/node-type": node_type, "ray.io/group": group_label}
    return {**labels, **KUBERAY_LABELS, **own}


def _ray_resources(group: str) -> dict[str, float]:
    """The custom resources of ``rayStartParams.resources``: KubeRay's quoted JSON,
    '"{\\"name\\": 1}"', with the backslashes as characters of the string."""
    text = _groups()[group]["rayStartParams"].get("resources")
    if text is None:
        return {}
    assert text.startswith('"') and text.endswith('"'), f"{group}: {text!r} is not quoted"
    resources: dict[str, float] = json.loads(text[1:-1].replace('\\"', '"'))
    return resources


def _serve_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    return config


def _deployments() -> dict[str, dict[str, Any]]:
    (app,) = _serve_config()["applications"]
    return {deployment["name"]: deployment for deployment in app["deployments"]}


def test_rayservice_uses_only_kuberay_fields() -> None:
    service = _rayservice()
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    spec = service["spec"]
    assert set(spec) <= RAYSERVICE_FIELDS, set(spec) - RAYSERVICE_FIELDS
    assert spec["upgradeStrategy"]["type"] in {"NewCluster", "None"}
    cluster = _cluster_spec()
    assert set(cluster) <= RAYCLUSTER_FIELDS, set(cluster) - RAYCLUSTER_FIELDS
    assert set(cluster["headGroupSpec"]) <= HEAD_FIELDS
    for group in cluster["workerGroupSpecs"]:
        assert set(group) <= WORKER_FIELDS, set(group) - WORKER_FIELDS
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert set(cluster["autoscalerOptions"]) <= AUTOSCALER_FIELDS
    assert set(cluster["gcsFaultToleranceOptions"]) <= GCS_FT_FIELDS
    for group in _groups().values():
        params = group["rayStartParams"]
        assert all(isinstance(value, str) for value in params.values()), "strings only"


def test_rayservice_version_matches_the_pinned_ray() -> None:
    version = _cluster_spec()["rayVersion"]
    pinned = [
        line.split("==", 1)[1].strip()
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if line.startswith("ray==")
    ]
    if pinned:
        assert version == pinned[0], f"rayVersion {version}, constraints.txt ray=={pinned[0]}"
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed: rayVersion is compared with constraints.txt only")
    assert version == ray.__version__


def test_pod_templates_match_the_kubernetes_schema() -> None:
    for group, template in _templates(_rayservice()).items():
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"fakewatch-{group}",
                "namespace": NAMESPACE,
                **template["metadata"],
            },
            "spec": template["spec"],
        }
        _validate(pod, f"rayservice.yaml, group {group}")


def test_ray_pods_are_restricted_and_probed() -> None:
    """The namespace enforces Pod Security `restricted`; KubeRay copies the Ray
    container's securityContext to the init container it adds, and takes the
    autoscaler's from autoscalerOptions. With probes of their own, KubeRay injects none
    (some of its own call wget, which the images lack)."""
    for group in _groups():
        pod = _groups()[group]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, group
        assert pod["securityContext"]["runAsUser"] >= 1000, group
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", group
        container = _ray_container(group)
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, group
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], group
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/api/healthz", (group, probe)
        assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), group
        labels = _groups()[group]["template"]["metadata"]["labels"]
        assert not [k for k in labels if k.startswith(RESERVED_LABELS)], "KubeRay's labels"
    autoscaler = _cluster_spec()["autoscalerOptions"]["securityContext"]
    assert autoscaler["allowPrivilegeEscalation"] is False
    assert autoscaler["capabilities"]["drop"] == ["ALL"]


def test_serve_config_is_valid_for_ray_serve() -> None:
    try:
        from ray.serve.schema import ServeDeploySchema
    except ImportError:
        pytest.skip("ray is not installed (pip install fakewatch[cluster])")
    schema = ServeDeploySchema.model_validate(_serve_config())
    (app,) = schema.applications
    assert app.name == "fakewatch"
    assert app.import_path == "fakewatch.cluster.launch:build"
    assert app.route_prefix is None, "the Front serves the API itself"
    assert {d.name for d in app.deployments} == {"Front", "Segmenter"}


def test_the_application_builder_takes_the_configmap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serveConfigV2's import_path names a callable that, given its args and the
    ConfigMap at their path (with a Ray container's environment), builds the
    application; nothing is deployed."""
    pytest.importorskip("ray.serve", reason="ray is not installed (pip install fakewatch[cluster])")
    from ray.serve import Application

    (app,) = _serve_config()["applications"]
    module, _, name = app["import_path"].partition(":")
    build = getattr(importlib.import_module(module), name)
    path = tmp_path / _config_path().name
    path.write_text(_configmap()["data"][_config_path().name])
    for key, value in _environ("head").items():
        monkeypatch.setenv(key, value)
    assert isinstance(build({**app["args"], "config": str(path)}), Application)


def test_front_is_pinned_to_the_head() -> None:
    head = _groups()["head"]["rayStartParams"]
    assert head["num-cpus"] == "0", "nothing but the front lands on the head"
    assert _ray_resources("head") == {"fakewatch_front": 1}
    front = _deployments()["Front"]
    assert front["num_replicas"] == 1
    assert front["ray_actor_options"] == {"num_cpus": 0, "resources": {"fakewatch_front": 1}}
    for group in _groups():
        if group != "head":
            assert "fakewatch_front" not in _ray_resources(group), group


def test_shards_and_segmenter_have_their_workers() -> None:
    shards, segmenter = _groups()["shards"], _groups()["segmenter"]
    assert _ray_resources("shards")["stream_slots"] >= 1
    assert "stream_slots" not in _ray_resources("segmenter"), "shards stay off GPU nodes"
    gpu = _deployments()["Segmenter"]["ray_actor_options"]["num_gpus"]
    assert gpu == 1
    limits = _ray_container("segmenter")["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in _ray_container("shards")["resources"]["limits"]
    pod = segmenter["template"]["spec"]
    assert pod["nodeSelector"] and pod["tolerations"], "the GPU nodes' label and taint"
    autoscaling = _deployments()["Segmenter"]["autoscaling_config"]
    assert autoscaling["max_replicas"] <= segmenter["maxReplicas"] * limits["nvidia.com/gpu"]
    assert shards["minReplicas"] >= 1


def test_ray_metrics_port_is_declared_for_the_pod_monitor() -> None:
    monitor = _one("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert NAMESPACE in monitor["spec"]["namespaceSelector"]["matchNames"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    for group in _groups():
        assert selector.items() <= _pod_labels(group).items(), f"{group} is not scraped"
        ports = {p["name"]: p["containerPort"] for p in _ray_container(group)["ports"]}
        assert ports[endpoint["port"]] == RAY_METRICS_PORT, group
        params = _groups()[group]["rayStartParams"]
        assert params.get("metrics-export-port", str(RAY_METRICS_PORT)) == str(RAY_METRICS_PORT)


# ---------------------------------------------------------------- the API and Prometheus


def test_api_service_selects_the_head_only() -> None:
    service = _one("Service", "fakewatch-api")
    selector = service["spec"]["selector"]
    assert selector["ray.io/node-type"] == "head"
    assert selector.items() <= _pod_labels("head").items()
    for group in _groups():
        if group != "head":
            assert not selector.items() <= _pod_labels(group).items(), group
    (port,) = service["spec"]["ports"]
    assert port["port"] == API_PORT
    ports = {p["name"]: p["containerPort"] for p in _ray_container("head")["ports"]}
    assert ports[port["targetPort"]] == API_PORT


def test_scrape_config_reads_the_fronts_service_discovery() -> None:
    scrape = _one("ScrapeConfig")
    assert scrape["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    service = _one("Service", "fakewatch-api")
    address = f"{service['metadata']['name']}.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}"
    (discovery,) = scrape["spec"]["httpSDConfigs"]
    assert discovery["url"] == f"http://{address}/cluster/targets"
    (front,) = scrape["spec"]["staticConfigs"]
    assert front == {"targets": [address], "labels": {"component": "front"}}
    assert scrape["spec"]["metricsPath"] == "/metrics"
    assert scrape["spec"]["honorLabels"] is _needs_honor_labels()
    assert {"targetLabel": "job", "replacement": "fakewatch"} in scrape["spec"]["relabelings"]


@pytest.mark.peer
def test_local_prometheus_config(tmp_path: Path) -> None:
    """deploy/prometheus/cluster.yml: promtool accepts it, its targets are the local
    front's port of the ConfigMap, and its job is the one alerts.yml watches."""
    for name in (PROMETHEUS_CONFIG.name, "alerts.yml"):
        shutil.copy(PROMETHEUS_CONFIG.parent / name, tmp_path / name)
    assert "SUCCESS" in promtool("check", "config", str(tmp_path / PROMETHEUS_CONFIG.name))
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "fakewatch"
    port = _configmap_data()["server"]["port"]
    (front,) = job["static_configs"]
    assert front == {"targets": [f"127.0.0.1:{port}"], "labels": {"component": "front"}}
    (discovery,) = job["http_sd_configs"]
    assert discovery["url"] == f"http://127.0.0.1:{port}/cluster/targets"
    assert job["honor_labels"] is _needs_honor_labels()


def _needs_honor_labels() -> bool:
    """Whether a series of the service has a label the cluster's targets also get: the
    scrape must then keep the series' own (honor_labels), or Prometheus renames it."""
    target_labels = {"component", "shard", "replica", "node"}
    metrics = vars(PipelineMetrics()).values()
    labels = {name for m in metrics if isinstance(m, MetricWrapperBase) for name in m._labelnames}
    return bool(labels & target_labels)


# ---------------------------------------------------------------- configuration and state


def _configmap() -> dict[str, Any]:
    return _one("ConfigMap")


def _configmap_data() -> dict[str, Any]:
    (text,) = _configmap()["data"].values()
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _config_path() -> PurePosixPath:
    (app,) = _serve_config()["applications"]
    return PurePosixPath(app["args"]["config"])


def _mounts(group: str) -> dict[str, dict[str, Any]]:
    """The volumes of the Ray container of ``group``, by mount path."""
    volumes = {v["name"]: v for v in _groups()[group]["template"]["spec"]["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in _ray_container(group)["volumeMounts"]}


def test_every_ray_pod_mounts_the_config_and_secrets() -> None:
    """The application builder may run on any node: each has the configuration at the
    path of serveConfigV2's args, and the token and webhook secrets it refers to."""
    path = _config_path()
    secret_keys = set(_base_secret()["stringData"])
    for group in _groups():
        mounts = _mounts(group)
        config_map = mounts[str(path.parent)]["configMap"]["name"]
        assert config_map == _configmap()["metadata"]["name"], group
        assert path.name in _configmap()["data"], group
        secret = mounts["/run/secrets/fakewatch"]["secret"]
        assert secret["secretName"] == _base_secret()["metadata"]["name"], group
        assert {item["key"] for item in secret["items"]} <= secret_keys
        for variable in _ray_container(group)["env"]:
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                assert reference["name"] == secret["secretName"] and reference["key"] in secret_keys
    head = _mounts("head")
    claim = head[str(STATE)]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in _objects()


def _base_secret() -> dict[str, Any]:
    """The Secret the cluster reads (created by hand; the single-machine manifests ship
    its placeholder with the same name and keys)."""
    (secret,) = _load_all(KUBERNETES / "base/secret.yaml")
    assert isinstance(secret, dict)
    return secret


def _environ(group: str) -> dict[str, str]:
    """The FAKEWATCH_* variables of the Ray container of ``group``, a real token given."""
    environ = {}
    for variable in _ray_container(group)["env"]:
        if not variable["name"].startswith("FAKEWATCH_"):
            continue
        if "value" in variable:
            environ[variable["name"]] = variable["value"]
        else:
            assert variable["valueFrom"]["secretKeyRef"]["key"] == "server-token"
            environ[variable["name"]] = secrets.token_urlsafe(24)
    return environ


def _config(group: str, folder: Path) -> ClusterServiceConfig:
    path = folder / _config_path().name
    path.write_text(_configmap()["data"][_config_path().name])
    return load_cluster_config(path, _environ(group))


def test_configmap_config_loads_on_every_ray_pod(tmp_path: Path) -> None:
    for group in _groups():
        config = _config(group, tmp_path)
        assert config.server.host == "0.0.0.0" and config.server.port == API_PORT
        assert config.streams == ()
        _assert_state_on_volume(config, STATE, workdir=STATE, all_absolute=True)
        # the Segmenter gets the configuration the builder loaded, on any of these pods
        assert config.engine.device == "cuda", group
    secret_mount = PurePosixPath("/run/secrets/fakewatch/webhook-secrets")
    config_file = tmp_path / _config_path().name
    _check_webhook_example(config_file, _environ("head"), secret_mount, tmp_path)


def _cluster_section() -> dict[str, Any]:
    section: dict[str, Any] = _configmap_data()["cluster"]
    return section


def test_cluster_section_loads_as_written(tmp_path: Path) -> None:
    cluster = _config("head", tmp_path).cluster
    for key, value in _cluster_section().items():
        assert getattr(cluster, key) == value, key
    # what fakewatch.cluster.launch builds the Segmenter with, where it says
    assert cluster.max_ongoing == _deployments()["Segmenter"]["max_ongoing_requests"]


def test_redis_serves_fakewatch_and_the_gcs() -> None:
    """cluster.redis_url and the GCS fault tolerance address are the Service of
    redis.yaml, whose Redis keeps an append-only file on its volume."""
    redis = _one("Service", "fakewatch-redis")
    (port,) = redis["spec"]["ports"]
    url = urlsplit(_cluster_section()["redis_url"])
    assert (url.scheme, url.hostname, url.port) == (
        "redis",
        redis["metadata"]["name"],
        port["port"],
    )
    ft_address = _cluster_spec()["gcsFaultToleranceOptions"]["redisAddress"]
    assert ft_address == f"{url.hostname}:{url.port}"
    deployment = _one("Deployment", "fakewatch-redis")
    template = deployment["spec"]["template"]
    assert redis["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[port["targetPort"]] == 6379
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes", "persistence"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == args[args.index("--dir") + 1]
    claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in _objects()


def test_shards_and_segmenter_fit_the_cluster_section() -> None:
    cluster = _cluster_section()
    # one stream slot per shard: enough at the initial worker count and at the most
    slots = _ray_resources("shards")["stream_slots"]
    assert cluster["shards"] <= slots * _groups()["shards"]["replicas"]
    assert cluster["shards"] <= slots * _groups()["shards"]["maxReplicas"]
    # the Segmenter: every shard may wait on one call while a batch fills
    segmenter = _deployments()["Segmenter"]
    ongoing = segmenter["max_ongoing_requests"]
    assert ongoing >= cluster["shards"], "max_ongoing_requests below cluster.shards"
    assert ongoing >= cluster["segmenter_max_batch"], "max_ongoing_requests below a batch"
    autoscaling, options = segmenter["autoscaling_config"], segmenter["ray_actor_options"]
    assert {
        "segmenter_min_replicas": autoscaling["min_replicas"],
        "segmenter_max_replicas": autoscaling["max_replicas"],
        "segmenter_target_ongoing": autoscaling["target_ongoing_requests"],
        "segmenter_cpus": options["num_cpus"],
        "segmenter_gpus": options["num_gpus"],
    }.items() <= cluster.items(), "serveConfigV2's Segmenter differs from cluster:"
