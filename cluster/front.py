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

Its background tasks: the :class:`~fakewatch.cluster.alerts.AlertSender` (evidence,
webhooks, recent events, exactly as the single-machine service does them) and the
supervisor, which creates any missing shard actor and pings them all every second.
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
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from ray import serve
from ray.actor import ActorHandle

from fakewatch.cluster.alerts import GROUP, AlertSender
from fakewatch.cluster.shard import StreamShard, shard_name
from fakewatch.cluster.state import ClusterState, DesiredStream, connect
from fakewatch.cluster.targets import TARGET_MAX_AGE_S
from fakewatch.stream import api
from fakewatch.stream.config import ServiceConfig
from fakewatch.stream.events import EventSink, RecentEvents
from fakewatch.stream.evidence import EvidenceStore
from fakewatch.stream.ffmpeg_source import SourceURLError, check_url
from fakewatch.stream.logs import LOGGER_NAME, configure_logging, describe_error, log
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.pipeline import STREAM_NAME, StreamLimitError, StreamNameError
from fakewatch.stream.redact import redact_url
from fakewatch.stream.webhooks import WebhookSink

logger = logging.getLogger(f"{LOGGER_NAME}.cluster.front")

FRONT_RESOURCE = "fakewatch_front"
SHARD_RESOURCE = "stream_slots"
SUPERVISE_EVERY_S = 1.0


def shard_actor(config: ServiceConfig, index: int) -> ActorHandle[Any]:
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

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        cluster = config.cluster
        self.state = ClusterState(connect(cluster), cluster)
        settings = config.evidence
        self.evidence = EvidenceStore(
            settings.folder,
            max_alerts=settings.max_alerts,
            max_age_s=settings.max_age_days * 86400,
            max_bytes=round(settings.max_megabytes * 1024**2),
        )
        self.recent = RecentEvents()
        self.recent.seed(self.evidence.recent(limit=50)[::-1])
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
        self.webhooks: WebhookSink | None = None
        if config.webhooks.endpoints:
            self.webhooks = WebhookSink(config.webhooks, self.evidence, self.metrics)
        sinks: list[EventSink] = [self.recent, self.evidence]
        if self.webhooks is not None:
            sinks.append(self.webhooks)
        consumer = f"front-{socket.gethostname()}-{os.getpid()}"
        self.sender = AlertSender(self.state, sinks, consumer, cluster.alert_claim_idle_s)
        self.shards: dict[int, ActorHandle[Any]] = {}
        self.ask_timeout_s = min(2.0, cluster.call_timeout_s)
        """How long a shard may take to answer a ping or a request for its streams."""
        self.pings: dict[int, dict[str, Any]] = {}
        self.redis_ok = False

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


FRONT = web.AppKey("front", FrontState)


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


async def list_streams(request: web.Request) -> web.Response:
    front = request.app[FRONT]
    desired, reported = await asyncio.gather(front.state.streams(), front.snapshots())
    streams = [reported.get(s.id) or starting(s) for s in desired]
    return web.json_response({"streams": streams})


async def add_stream(request: web.Request) -> web.Response:
    front = request.app[FRONT]
    url, name = await api.new_stream_request(request)
    if name is not None and not STREAM_NAME.match(name):
        raise web.HTTPBadRequest(
            text='"name" must be 1-64 letters, digits, ".", "_" or "-", '
            "starting with a letter or digit"
        )
    try:
        check_url(url, front.config.sources)
        stream = await front.state.add(name, url, front.config.limits.max_streams)
    except StreamLimitError as exc:
        return api.error(429, str(exc))
    except StreamNameError as exc:
        return api.error(409, str(exc))
    except SourceURLError as exc:
        return api.error(400, str(exc))
    front.poke(stream)
    log(logger, logging.INFO, "stream.desired", stream=stream.name, shard=stream.shard)
    return web.json_response(
        {"id": stream.id, "name": stream.name, "source": redact_url(url), "shard": stream.shard},
        status=201,
        headers={"Location": f"/api/streams/{stream.id}"},
    )


async def get_stream(request: web.Request) -> web.Response:
    front = request.app[FRONT]
    stream = await front.state.find(request.match_info["id"])
    if stream is None:
        return api.error(404, f"no stream {request.match_info['id']!r}")
    return web.json_response(await front.ask(stream) or starting(stream))


async def delete_stream(request: web.Request) -> web.Response:
    front = request.app[FRONT]
    stream = await front.state.find(request.match_info["id"])
    if stream is None:
        return api.error(404, f"no stream {request.match_info['id']!r}")
    await front.state.remove(stream)
    front.poke(stream)
    log(logger, logging.INFO, "stream.undesired", stream=stream.name, shard=stream.shard)
    return web.Response(status=204)


async def no_webrtc(request: web.Request) -> web.Response:
    return api.error(
        501,
        "WebRTC ingest is served by `fakewatch serve` only; a cluster reads stream URLs "
        "(publish to an RTSP server and add its URL)",
    )


async def readyz(request: web.Request) -> web.Response:
    front = request.app[FRONT]
    reason = front.not_ready_reason()
    if reason:
        return api.error(503, reason)
    return web.json_response({"status": "ready", "shards": len(front.pings)})


async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(request.app[FRONT].metrics.registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def targets(request: web.Request) -> web.Response:
    """Prometheus HTTP service discovery: the shards' and replicas' metrics endpoints."""
    return web.json_response(await request.app[FRONT].state.targets(TARGET_MAX_AGE_S))


async def shards(request: web.Request) -> web.Response:
    front = request.app[FRONT]
    return web.json_response({"shards": [front.pings[i] for i in sorted(front.pings)]})


def build_front_app(front: FrontState) -> web.Application:
    """The API of ``fakewatch serve`` over the cluster's state; see the module docstring."""
    app = web.Application(middlewares=[api.guard], client_max_size=1024 * 1024)
    app[FRONT] = front
    app[api.CONFIG] = front.config
    app[api.EVIDENCE] = front.evidence
    app[api.RECENT] = front.recent
    app[api.BASE_URL] = {}
    app.router.add_get("/api/streams", list_streams)
    app.router.add_post("/api/streams", add_stream)
    app.router.add_get("/api/streams/{id}", get_stream)
    app.router.add_delete("/api/streams/{id}", delete_stream)
    app.router.add_post("/api/whip", no_webrtc)
    app.router.add_post("/api/webrtc/offer", no_webrtc)
    app.router.add_get("/api/shards", shards)
    app.router.add_get("/api/events", api.list_events)
    app.router.add_get("/api/evidence/{id}/{name}", api.get_evidence)
    app.router.add_get("/", api.index_page)
    app.router.add_get("/static/{name}", api.static_file)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/cluster/targets", targets)
    return app


@serve.deployment(name="Front", num_replicas=1)
class Front:
    """The Serve replica hosting :class:`FrontState`'s HTTP server and tasks."""

    def __init__(self, config: ServiceConfig, segmenter: Any = None) -> None:
        """``segmenter`` is the segmenter's deployment, bound so that Serve deploys it
        with the front; shards reach it by name."""
        configure_logging(config.logging.level, config.logging.json_lines)
        self.config = config
        self.front = FrontState(config)
        self.url: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._started = asyncio.get_event_loop().create_task(self._start(), name="front")

    async def _start(self) -> None:
        front, server = self.front, self.config.server
        app = build_front_app(front)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, server.host, server.port)
        await site.start()
        self._runner = runner
        port = next((a[1] for a in runner.addresses), server.port)
        host = server.host if ":" not in server.host else f"[{server.host}]"
        if host == "0.0.0.0":
            host = socket.gethostbyname(socket.gethostname())
        base = f"http://{host}:{port}"
        app[api.BASE_URL]["url"] = server.public_url or base
        if front.webhooks is not None:
            front.webhooks.set_base_url(app[api.BASE_URL]["url"])
            await front.webhooks.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(front.sender.run(), name="alert sender"),
            loop.create_task(front.supervise(), name="supervisor"),
        ]
        self.url = base
        log(logger, logging.INFO, "service.listening", url=base, cluster=True)

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
        for task in [self._started, *self._tasks]:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"{task.get_name()} ended: {task.exception()!r}")

    async def pause(self) -> None:
        """Stop supervising the shards (so that a planned stop of them sticks)."""
        for task in self._tasks:
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
        """Stop serving (for a planned shutdown): the tasks, the webhooks, the server."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.front.webhooks is not None:
            await self.front.webhooks.close(2.0)
        with contextlib.suppress(Exception):
            await self.front.evidence.close()
        if self._runner is not None:
            await self._runner.cleanup()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
