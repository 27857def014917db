"""The cluster's configuration: the service's, plus a ``cluster:`` section.

One file format serves both commands: :class:`ClusterServiceConfig` is the
:class:`~fakewatch.stream.config.ServiceConfig` of ``fakewatch serve`` with the
:class:`ClusterConfig` section added, loaded the same way (YAML, then ``FAKEWATCH_*``
variables such as ``FAKEWATCH_CLUSTER__SHARDS``, then overrides). ``fakewatch serve``
accepts the section too and ignores it, so one file can configure either.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from fakewatch.stream.config import Section, ServiceConfig, read_config


class ClusterConfig(Section):
    """``fakewatch cluster``: streams spread over Ray shard actors, one batched segmenter."""

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        max_length=2048,
        description="Redis holding the desired streams, vote checkpoints and alerts",
    )
    namespace: str = Field(
        "fakewatch",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        description="Ray namespace of the actors and prefix of the Redis keys",
    )
    shards: int = Field(
        16,
        ge=1,
        le=4096,
        description="stream shards (fixed: a stream's shard is a hash of its id); "
        "several times the largest node count",
    )
    sync_interval_s: float = Field(
        1.0, gt=0, le=60, description="how often a shard reloads its streams from Redis"
    )
    checkpoint_interval_s: float = Field(
        1.0, gt=0, le=60, description="how often a shard saves its streams' vote windows"
    )
    call_timeout_s: float = Field(
        10.0, gt=0, le=300, description="longest wait for a shard, the segmenter or Redis"
    )
    segmenter_max_batch: int = Field(
        32, ge=1, le=1024, description="crops per segmenter call, across shards"
    )
    segmenter_wait_ms: float = Field(
        10.0, ge=0, le=1000, description="longest a segmenter call waits to fill its batch"
    )
    segmenter_max_ongoing: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="requests one segmenter replica takes at once "
        "(default: the larger of shards and segmenter_max_batch)",
    )
    segmenter_min_replicas: int = Field(1, ge=1, le=1024, description="fewest segmenter replicas")
    segmenter_max_replicas: int = Field(4, ge=1, le=1024, description="most segmenter replicas")
    segmenter_target_ongoing: float = Field(
        8.0, gt=0, le=65536, description="ongoing requests per replica autoscaling aims at"
    )
    segmenter_cpus: float = Field(1.0, ge=0, le=256, description="CPUs one replica reserves")
    segmenter_gpus: float = Field(0.0, ge=0, le=16, description="GPUs one replica reserves")
    alert_claim_idle_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="an alert a sender took but did not finish for this long is taken over",
    )

    @property
    def max_ongoing(self) -> int:
        return self.segmenter_max_ongoing or max(self.shards, self.segmenter_max_batch)

    @model_validator(mode="after")
    def _check(self) -> ClusterConfig:
        if self.segmenter_min_replicas > self.segmenter_max_replicas:
            raise ValueError("segmenter_min_replicas must not exceed segmenter_max_replicas")
        return self


class ClusterServiceConfig(ServiceConfig):
    """Everything ``fakewatch cluster`` needs: the service's settings and the cluster's."""

    cluster: ClusterConfig = ClusterConfig()


def load_cluster_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ClusterServiceConfig:
    """The configuration from ``path`` (YAML), then ``FAKEWATCH_*`` variables, then
    ``overrides`` (dotted keys), with the ``cluster:`` section."""
    return read_config(ClusterServiceConfig, path, environ, overrides)
