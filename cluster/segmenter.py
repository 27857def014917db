"""The UNet as a Ray Serve deployment, batching the crops of every shard.

Each shard's own batcher gathers its streams' crops for a few milliseconds and sends them
as one array (one request per tick, not one per crop). :class:`SegmenterDeployment`
gathers those requests again with ``@serve.batch``, counting crops rather than requests
(``batch_size_fn``), up to ``cluster.segmenter_max_batch`` crops or
``cluster.segmenter_wait_ms``, and runs them as one engine call: the engine bundle and
runtime of the single-machine service (TensorRT on a GPU worker when ``engine.backend``
says so). A replica takes up to ``cluster.segmenter_max_ongoing`` requests at once (at
least the shard count: Serve's default of 5 would cap every batch at 5 requests), and
Serve adds replicas when the ongoing requests per replica pass
``cluster.segmenter_target_ongoing``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import time
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from fakewatch.cluster.config import ClusterServiceConfig
from fakewatch.cluster.state import ClusterState, connect
from fakewatch.cluster.targets import MetricsEndpoint
from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.defaults import default_bundle_path, installed_version
from fakewatch.stream.analysis.factory import open_local_segmenter
from fakewatch.stream.logs import LOGGER_NAME, configure_logging, log
from fakewatch.stream.metrics import PipelineMetrics

logger = logging.getLogger(f"{LOGGER_NAME}.cluster.segmenter")

APP = "fakewatch"
"""The Serve application of a cluster."""
DEPLOYMENT = "Segmenter"

Masks = tuple[np.ndarray, np.ndarray, np.ndarray]


def count_crops(requests: list[Any]) -> int:
    """A batch's size in crops: each request is one shard's array of crops."""
    return sum(len(crops) for crops in requests)


@serve.deployment(name=DEPLOYMENT)
class SegmenterDeployment:
    """One replica: an engine, its metrics endpoint and the batched ``segment`` method."""

    def __init__(self, config: ClusterServiceConfig) -> None:
        configure_logging(config.logging.level, config.logging.json_lines)
        cluster = config.cluster
        batched: Any = self.segment  # @serve.batch adds the setters
        batched.set_max_batch_size(cluster.segmenter_max_batch)
        batched.set_batch_wait_timeout_s(cluster.segmenter_wait_ms / 1000)
        bundle = EngineBundle.load(config.engine.bundle or default_bundle_path())
        self.local = open_local_segmenter(config, bundle)
        engine = self.local.engine
        size = bundle.spec.input_size
        self.local.segment(np.zeros((1, size, size, 3), np.uint8))  # warm-up
        self.metrics = PipelineMetrics()
        self.metrics.info.info(
            {
                "version": installed_version(),
                "engine": engine.info.label,
                "backend": engine.info.backend,
                "precision": engine.info.precision,
                "precision_reason": engine.info.reason or "asked for in engine.precision",
                "model": bundle.manifest.name,
                "model_sha256": bundle.model_sha256[:16],
            }
        )
        self.metrics.ready.set(1)
        self.calls = 0
        self.crops = 0
        # one engine call at a time: the engine's own threads are the parallelism
        self._engine = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="engine")
        replica = serve.get_replica_context().replica_id.unique_id
        self.state = ClusterState(connect(cluster), cluster)
        self.endpoint = MetricsEndpoint(
            self.metrics.registry,
            f"segmenter-{replica}",
            {"component": "segmenter", "replica": replica},
        )
        self._announce = asyncio.get_event_loop().create_task(self.endpoint.announce(self.state))
        log(logger, logging.INFO, "segmenter.ready", engine=engine.info.label, replica=replica)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=count_crops)
    async def segment(self, requests: list[np.ndarray]) -> list[Masks]:
        """Masks, scores and areas for each request's crops, from one engine call."""
        crops = np.concatenate(requests)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        masks, scores, areas = await loop.run_in_executor(self._engine, self.local.segment, crops)
        self.metrics.batch_size.observe(len(crops))
        self.metrics.inference.observe(time.perf_counter() - started)
        self.calls += 1
        self.crops += len(crops)
        results: list[Masks] = []
        start = 0
        for request in requests:
            end = start + len(request)
            results.append((masks[start:end], scores[start:end], areas[start:end]))
            start = end
        return results

    def stats(self) -> dict[str, Any]:
        """Engine calls and crops so far in this replica, and its process id."""
        return {"calls": self.calls, "crops": self.crops, "pid": os.getpid()}

    def check_health(self) -> None:
        if self._announce.done() and not self._announce.cancelled():
            self._announce.result()  # raises what ended it

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.endpoint.close()


class RemoteSegmenter:
    """The :class:`~fakewatch.stream.analysis.segmenter.Segmenter` a shard's batcher calls: one
    request per batch to the Serve deployment, answered within ``timeout_s``. It blocks,
    and is called from the batcher's engine thread."""

    def __init__(self, max_batch: int, timeout_s: float, app: str = APP) -> None:
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.handle: DeploymentHandle[Any] = serve.get_deployment_handle(DEPLOYMENT, app_name=app)

    def segment(self, crops: np.ndarray) -> Masks:
        masks, scores, areas = self.handle.segment.remote(crops).result(timeout_s=self.timeout_s)
        return masks, scores, areas
