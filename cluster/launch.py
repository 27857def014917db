"""The cluster's Serve application, and starting it on a local or existing Ray cluster.

:func:`build_application` binds the ``Front`` and the ``Segmenter`` deployments with the
settings of a :class:`~fakewatch.cluster.config.ClusterServiceConfig`; :func:`build` is the same
for a Serve config file or a KubeRay ``RayService`` (``import_path:
fakewatch.cluster.launch:build``, ``args: {config: <path>}``). :func:`start` deploys it on
the Ray cluster this process is connected to and waits until the front listens;
:func:`stop` takes everything down again (the shards are detached actors, so they
outlive the process that created them until then).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, cast

import ray
from ray import serve
from ray.serve import Application, Deployment
from ray.serve.handle import DeploymentHandle

from fakewatch.cluster.config import ClusterServiceConfig, load_cluster_config
from fakewatch.cluster.front import FRONT_RESOURCE, Front
from fakewatch.cluster.segmenter import APP, SegmenterDeployment
from fakewatch.cluster.shard import shard_name


class ClusterStartError(RuntimeError):
    """The cluster did not come up in time; the message says which part is missing."""


def build_application(config: ClusterServiceConfig) -> Application:
    cluster = config.cluster
    segmenter = (
        cast(Deployment, SegmenterDeployment)
        .options(
            max_ongoing_requests=cluster.max_ongoing,
            autoscaling_config={
                "min_replicas": cluster.segmenter_min_replicas,
                "max_replicas": cluster.segmenter_max_replicas,
                "target_ongoing_requests": cluster.segmenter_target_ongoing,
            },
            ray_actor_options={
                "num_cpus": cluster.segmenter_cpus,
                "num_gpus": cluster.segmenter_gpus,
            },
        )
        .bind(config)
    )
    front = cast(Deployment, Front).options(
        ray_actor_options={"num_cpus": 0, "resources": {FRONT_RESOURCE: 1}},
    )
    application: Application = front.bind(config, segmenter)
    return application


def build(args: dict[str, Any]) -> Application:
    """The application builder a Serve config names: ``args: {config: <YAML path>}``;
    ``FAKEWATCH_*`` variables apply as for ``fakewatch serve``."""
    path = args.get("config")
    return build_application(load_cluster_config(Path(path) if path else None))


def start(
    config: ClusterServiceConfig, timeout_s: float = 120.0
) -> tuple[DeploymentHandle[Any], str]:
    """Deploy the application on the connected Ray cluster; the front's handle and URL
    once it listens and every shard is ready."""
    serve.start(proxy_location="Disabled")
    handle: DeploymentHandle[Any] = serve.run(
        build_application(config), name=APP, route_prefix=None, blocking=False
    )
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            status = handle.status.remote().result(timeout_s=10)
        except Exception as error:  # not deployed yet
            status = {"not_ready": f"the front is not deployed yet: {error!r}"}
        if status.get("ready"):
            return handle, str(status["url"])
        time.sleep(0.5)
    raise ClusterStartError(
        f"the cluster was not ready within {timeout_s:g} s: {status.get('not_ready')}"
    )


def stop(config: ClusterServiceConfig, timeout_s: float = 30.0) -> None:
    """Take the whole cluster down: the front stops supervising, the shards stop (each
    clears its open alerts and publishes what it holds), the senders deliver what is in
    the alerts stream (within ``timeout_s``; what is left stays for the next start), then
    the Serve application goes."""
    namespace = config.cluster.namespace
    front = None
    with contextlib.suppress(Exception):
        front = serve.get_app_handle(APP)
        front.pause.remote().result(timeout_s=10)
    shards = []
    for index in range(config.cluster.shards):
        try:
            shards.append(ray.get_actor(shard_name(index), namespace=namespace))
        except ValueError:
            continue
    with contextlib.suppress(Exception):  # a shard that does not stop is killed all the same
        ray.get([s.stop.remote() for s in shards], timeout=timeout_s)
    for shard in shards:
        ray.kill(shard, no_restart=True)
    if front is not None:
        with contextlib.suppress(Exception):
            front.drain.remote(timeout_s / 2).result(timeout_s=timeout_s)
        with contextlib.suppress(Exception):
            front.close.remote().result(timeout_s=10)
    serve.delete(APP)
