"""The cluster's front: the REST API, the alert sender and the shards' supervisor.

``Front`` is a Ray Serve deployment (one replica, on the node that offers the
``fakewatch_front`` resource) whose replica serves the same HTTP API as ``fakewatch
serve`` on ``server.host:server.port``, with the same bearer token, JSON errors, pages,
events and evidence:

- adding or removing a stream writes the desired state in Redis (the cluster's single
  source of truth) and asks the stream's shard to sync at once; a shard that is down
  finds the change when it comes back, so nothing is lost while one restarts;
- listing streams asks every shard for its streams' state; a desired stream that no
  shard reports yet is listed as ``starting``;
- WebRTC ingest (``/api/whip``) is single-machine only: a cluster reads URLs;
- ``/cluster/targets`` lists the shards' and segmenter replicas' metrics endpoints for
  Prometheus's HTTP service discovery; ``/metrics`` is the front's own (webhooks, and
  ``fakewatch_cluster_*``: shards by state, desired streams, alerts not yet sent).

It is a host of :mod:`fakewatch.stream.host`, as ``fakewatch serve`` is: the same sinks
in the same order, the same route table (its streams are the shards',
:class:`ClusterStreams`), the same listening and bounded stop. Its work runs in the
background: the :class:`~fakewatch.cluster.alerts.AlertSender` (recent events, evidence,
webhooks, exactly as the single-machine service does them) and the supervisor, which
creates any missing shard actor and pings them all every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

import ray
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge
from ray import serve
from ray.actor import ActorHandle

from fakewatch.cluster.alerts import GROUP, AlertSender
from fakewatch.cluster.config import ClusterServiceConfig
from fakewatch.cluster.shard import StreamShard, shard_name
from fakewatch.cluster.state import ClusterState, DesiredStream, connect
from fakewatch.cluster.targets import TARGET_MAX_AGE_S
from fakewatch.stream.analysis.registry import check_stream_name
from fakewatch.stream.host import Host, open_sinks
from fakewatch.stream.http.routes import Route
from fakewatch.stream.logs import LOGGER_NAME, configure_logging, describe_error, log
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.redact import redact_url
from fakewatch.stream.sources.ffmpeg import check_url

logger = logging.getLogger(f"{LOGGER_NAME}.cluster.front")

FRONT_RESOURCE = "fakewatch_front"
SHARD_RESOURCE = "stream_slots"
SUPERVISE_EVERY_S = 1.0


def shard_actor(config: ClusterServiceConfig, index: int) -> ActorHandle[Any]:
    """The shard actor ``shard-<index>``, created (detached, restarted without end) if it
    does not exist yet."""
    actor: Any = ray.remote(StreamShard)
    actor = actor.options(
        name=shard_name(index),
        namespace=config.cluster.namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=-1,
        num_cpus=0,
        resources={SHARD_RESOURCE: 1},
    )
    handle: ActorHandle[Any] = actor.remote(config, index)
    return handle


class FrontState:
    """What the front's HTTP handlers and background tasks share."""

    def __init__(self, config: ClusterServiceConfig) -> None:
        self.config = config
        cluster = config.cluster
        self.state = ClusterState(connect(cluster), cluster)
        self.metrics = PipelineMetrics()
        registry = self.metrics.registry
        self.shard_gauge = Gauge(
            "fakewatch_cluster_shards", "Shards by state", ["state"], registry=registry
        )
        self.desired_gauge = Gauge(
            "fakewatch_cluster_streams", "Streams the cluster should watch", registry=registry
        )
        self.pending_gauge = Gauge(
            "fakewatch_cluster_alerts_pending",
            "Events in the alerts stream not yet sent by a sender",
            registry=registry,
        )
        self.sinks = open_sinks(config, self.metrics)
        consumer = f"front-{socket.gethostname()}-{os.getpid()}"
        self.sender = AlertSender(
            self.state, self.sinks.ordered(), consumer, cluster.alert_claim_idle_s
        )
        self.shards: dict[int, ActorHandle[Any]] = {}
        self.ask_timeout_s = min(2.0, cluster.call_timeout_s)
        """How long a shard may take to answer a ping or a request for its streams."""
        self.pings: dict[int, dict[str, Any]] = {}
        self.redis_ok = False
        self._tasks: list[asyncio.Task[None]] = []

    # the work behind the API

    async def start(self) -> None:
        """Start the alert sender and the supervisor."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.sender.run(), name="alert sender"),
            loop.create_task(self.supervise(), name="supervisor"),
        ]

    async def stop(self, drain_s: float) -> None:
        """Stop the alert sender and the supervisor."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    async def supervise(self) -> None:
        """Create missing shards and ping them all, every second, until cancelled."""
        cluster = self.config.cluster
        while True:
            try:
                for index in range(cluster.shards):
                    if index not in self.shards:
                        self.shards[index] = await asyncio.to_thread(
                            shard_actor, self.config, index
                        )
                await self._ping_all()
                self.desired_gauge.set(await self.state.redis.hlen(self.state.key("streams")))
                pending = await self.state.redis.xpending(self.state.key("alerts"), GROUP)
                self.pending_gauge.set(pending["pending"])
                self.redis_ok = True
            except Exception as error:
                self.redis_ok = False
                log(logger, logging.WARNING, "front.supervise_failed", error=describe_error(error))
            self.metrics.ready.set(0 if self.not_ready_reason() else 1)
            await asyncio.sleep(SUPERVISE_EVERY_S)

    async def _ping_all(self) -> None:
        async def ping(index: int, shard: ActorHandle[Any]) -> None:
            try:
                self.pings[index] = await asyncio.wait_for(shard.ping.remote(), self.ask_timeout_s)
            except ray.exceptions.ActorDiedError as error:  # killed for good: create it again
                self.shards.pop(index, None)
                self.pings[index] = {"shard": index, "ready": False, "error": describe_error(error)}
            except Exception as error:
                self.pings[index] = {"shard": index, "ready": False, "error": describe_error(error)}

        await asyncio.gather(*(ping(i, s) for i, s in self.shards.items()))
        ready = sum(1 for p in self.pings.values() if p.get("ready"))
        self.shard_gauge.labels("ready").set(ready)
        self.shard_gauge.labels("not_ready").set(len(self.pings) - ready)

    def not_ready_reason(self) -> str:
        if not self.redis_ok:
            return "Redis does not answer (cluster.redis_url)"
        down = [shard_name(i) for i, p in sorted(self.pings.items()) if not p.get("ready")]
        missing = self.config.cluster.shards - len(self.pings)
        if down or missing:
            return f"shards not ready: {', '.join(down) or f'{missing} not started'}"
        return ""

    def poke(self, stream: DesiredStream) -> None:
        """Ask a stream's shard to sync now (it also does so every second by itself)."""
        shard = self.shards.get(stream.shard)
        if shard is not None:
            shard.sync.remote()

    async def ask(self, stream: DesiredStream) -> dict[str, Any] | None:
        shard = self.shards.get(stream.shard)
        if shard is None:
            return None
        try:
            snapshot: dict[str, Any] | None = await asyncio.wait_for(
                shard.snapshot.remote(stream.id), self.ask_timeout_s
            )
        except Exception:
            return None
        return snapshot

    async def snapshots(self) -> dict[str, dict[str, Any]]:
        """What every shard that answers in time reports, by stream id."""

        async def ask(shard: ActorHandle[Any]) -> list[dict[str, Any]]:
            try:
                found: list[dict[str, Any]] = await asyncio.wait_for(
                    shard.snapshots.remote(), self.ask_timeout_s
                )
            except Exception:
                return []
            return found

        lists = await asyncio.gather(*(ask(s) for s in self.shards.values()))
        return {s["id"]: s for found in lists for s in found}


def starting(stream: DesiredStream) -> dict[str, Any]:
    """A desired stream that no shard reports (yet)."""
    return {
        "id": stream.id,
        "name": stream.name,
        "kind": "url",
        "source": redact_url(stream.url),
        "status": "starting",
        "status_detail": f"waiting for {shard_name(stream.shard)}",
        "created": stream.created,
        "shard": stream.shard,
        "node": None,
    }


class ClusterStreams:
    """The API's streams on a cluster
    (:class:`~fakewatch.stream.http.control.StreamControl`): adding or removing one
    writes the desired state in Redis and asks its shard to sync; listing asks the
    shards. WebRTC publishers are not taken: a cluster reads URLs."""

    webrtc = False
    settable = False
    """Streams of a cluster run with the service's settings: the settings routes answer
    501 (a shard would lose them when its streams move)."""

    def __init__(self, front: FrontState) -> None:
        self.front = front

    @property
    def registry(self) -> CollectorRegistry:
        return self.front.metrics.registry

    async def streams(self) -> list[dict[str, Any]]:
        front = self.front
        desired, reported = await asyncio.gather(front.state.streams(), front.snapshots())
        return [reported.get(s.id) or starting(s) for s in desired]

    async def stream(self, key: str) -> dict[str, Any] | None:
        stream = await self.front.state.find(key)
        if stream is None:
            return None
        return await self.front.ask(stream) or starting(stream)

    async def add(
        self, url: str, name: str | None, settings: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if settings:
            raise NotImplementedError("a cluster's streams take no settings of their own")
        front = self.front
        if name is not None:
            check_stream_name(name)
        check_url(url, front.config.sources)
        stream = await front.state.add(name, url, front.config.limits.max_streams)
        front.poke(stream)
        log(logger, logging.INFO, "stream.desired", stream=stream.name, shard=stream.shard)
        return {
            "id": stream.id,
            "name": stream.name,
            "source": redact_url(url),
            "shard": stream.shard,
        }

    async def remove(self, key: str) -> bool:
        front = self.front
        stream = await front.state.find(key)
        if stream is None:
            return False
        await front.state.remove(stream)
        front.poke(stream)
        log(logger, logging.INFO, "stream.undesired", stream=stream.name, shard=stream.shard)
        return True

    async def change(self, key: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError("a cluster's streams take no settings of their own")

    async def publish(self, sdp: str, name: str | None) -> tuple[str, str]:
        raise NotImplementedError("a cluster takes no WebRTC publishers")

    async def end_session(self, stream_id: str) -> bool:
        return False

    def not_ready(self) -> str:
        return self.front.not_ready_reason()

    def ready_detail(self) -> dict[str, Any]:
        return {"shards": len(self.front.pings)}


def front_routes(front: FrontState) -> list[Route]:
    """The front's own routes, beside the API every host serves: the shards' pings, and
    the metrics endpoints for Prometheus's HTTP service discovery."""

    async def shards(request: web.Request) -> web.Response:
        return web.json_response({"shards": [front.pings[i] for i in sorted(front.pings)]})

    async def targets(request: web.Request) -> web.Response:
        return web.json_response(await front.state.targets(TARGET_MAX_AGE_S))

    return [
        Route("GET", "/api/shards", shards, "The shards' last pings", "application/json"),
        Route("GET", "/cluster/targets", targets, "Prometheus HTTP SD targets", "application/json"),
    ]


@serve.deployment(name="Front", num_replicas=1)
class Front:
    """The Serve replica hosting :class:`FrontState`'s HTTP server and tasks."""

    def __init__(self, config: ClusterServiceConfig, segmenter: Any = None) -> None:
        """``segmenter`` is the segmenter's deployment, bound so that Serve deploys it
        with the front; shards reach it by name."""
        configure_logging(config.logging.level, config.logging.json_lines)
        self.config = config
        self.front = FrontState(config)
        self.host = Host(
            config, ClusterStreams(self.front), self.front.sinks, self.front,
            front_routes(self.front),
        )  # fmt: skip
        self.url: str | None = None
        self._started = asyncio.get_event_loop().create_task(self._start(), name="front")

    async def _start(self) -> None:
        self.url = await self.host.start()

    async def status(self) -> dict[str, Any]:
        """The API's URL (once listening), the shards' pings and the sender's counts."""
        front = self.front
        return {
            "url": self.url,
            "ready": self.url is not None and not front.not_ready_reason(),
            "not_ready": front.not_ready_reason(),
            "shards": [front.pings[i] for i in sorted(front.pings)],
            "alerts_handled": front.sender.handled,
            "alert_repeats": front.sender.repeats,
        }

    def check_health(self) -> None:
        """Serve restarts the replica when its server or a task ended."""
        for task in [self._started, *self.front.tasks]:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"{task.get_name()} ended: {task.exception()!r}")

    async def pause(self) -> None:
        """Stop supervising the shards (so that a planned stop of them sticks)."""
        for task in self.front.tasks:
            if task.get_name() == "supervisor":
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def drain(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until the senders have taken and finished every alert
        in the stream; whether they did."""
        state = self.front.state
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            groups = await state.redis.xinfo_groups(state.key("alerts"))
            group = next((g for g in groups if _text(g.get("name")) == GROUP), None)
            if group is None or (not group.get("pending") and not group.get("lag")):
                return True
            await asyncio.sleep(0.1)
        return False

    async def close(self) -> None:
        """Stop serving (for a planned shutdown), as any host stops: the listening
        sockets, the tasks, the webhooks, the evidence store, the HTTP server."""
        with contextlib.suppress(Exception):  # a failed start has stopped everything
            await self._started
        if self.url is not None:
            await self.host.stop()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
