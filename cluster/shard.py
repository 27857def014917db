"""``StreamShard``: one Ray actor running the single-machine pipeline for its streams.

A shard is a detached, named actor (``shard-<i>`` in the cluster's namespace) that Ray
restarts on any node with a free ``stream_slots`` resource when its process or node
dies (``max_restarts=-1``). Its constructor only schedules :meth:`StreamShard._main` on
the actor's event loop, so a restarted shard resumes by itself, with nobody calling it:
it opens the pipeline (sources, sampling, face detection, tracking, vote; the crops go
to the cluster's segmenter), then every ``cluster.sync_interval_s`` brings its streams
in line with the desired state in Redis (the streams whose id hashes to it), and every
``cluster.checkpoint_interval_s`` saves their vote windows, one per face track with the
face's last box.

A stream a shard starts again gets its face tracks and their windows back, their times
moved forward by the time nobody watched it: that gap is not evidence that a face went
away, so an alert in progress neither clears nor fires again because of a restart. The
next detection continues each restored track where its face still is; a track whose
face is gone ends, and its alert is closed (``face track t3 lost``).

Every method is idempotent (Ray retries a call whose actor died, so a call may run
twice): :meth:`StreamShard.sync` converges on Redis's state whatever ran before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import ray

from fakewatch.cluster.alerts import AlertPublisher
from fakewatch.cluster.config import ClusterServiceConfig
from fakewatch.cluster.segmenter import APP, RemoteSegmenter
from fakewatch.cluster.state import ClusterState, DesiredStream, connect
from fakewatch.cluster.targets import MetricsEndpoint, node_address
from fakewatch.engines.crop import Box
from fakewatch.stream.analysis.factory import open_pipeline
from fakewatch.stream.analysis.pipeline import Pipeline
from fakewatch.stream.analysis.segmenter import Segmenter
from fakewatch.stream.analysis.state import StreamState, TrackVote
from fakewatch.stream.backoff import backoff_delay
from fakewatch.stream.http.views import stream_view
from fakewatch.stream.logs import LOGGER_NAME, configure_logging, describe_error, log
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.redact import redact_url
from fakewatch.stream.sinks.log import LogSink

logger = logging.getLogger(f"{LOGGER_NAME}.cluster.shard")

SHARD_MAX_STREAMS = 1024
"""A shard's own stream limit; the cluster's is ``limits.max_streams``, kept by the front."""
RETRY_S = (0.5, 10.0)
"""First and longest delay between attempts to open the pipeline."""


def shard_name(index: int) -> str:
    return f"shard-{index}"


def shard_config(config: ClusterServiceConfig) -> ClusterServiceConfig:
    """The pipeline settings of a shard: the service's, without its own streams or port,
    and with a batch as large as the segmenter takes."""
    limits = config.limits.model_copy(update={"max_streams": SHARD_MAX_STREAMS})
    batcher = config.batcher.model_copy(
        update={"max_batch": min(config.cluster.segmenter_max_batch, 256)}
    )
    return config.model_copy(update={"limits": limits, "batcher": batcher, "streams": ()})


class StreamShard:
    """See the module docstring; :func:`fakewatch.cluster.launch.ensure_shards` creates them."""

    def __init__(self, config: ClusterServiceConfig, index: int, app: str = APP) -> None:
        configure_logging(config.logging.level, config.logging.json_lines)
        self.config = shard_config(config)
        self.index = index
        self.app = app
        self.node = node_address()
        self.started = time.time()
        self.pipeline: Pipeline | None = None
        self.publisher: AlertPublisher | None = None
        self.state = ClusterState(connect(config.cluster), config.cluster)
        self.last_sync: float | None = None
        self.error = ""
        self._sync_lock = asyncio.Lock()
        self._main_task = asyncio.get_event_loop().create_task(self._main(), name="shard")

    # the actor's methods (all idempotent)

    async def ping(self) -> dict[str, Any]:
        """Who and where this shard is, and whether it runs."""
        pipeline = self.pipeline
        return {
            "shard": self.index,
            "name": shard_name(self.index),
            "node": self.node,
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "started": self.started,
            "ready": pipeline is not None and pipeline.ready,
            "streams": 0 if pipeline is None else len(pipeline.streams),
            "last_sync": self.last_sync,
            "error": self.error,
            "alerts_pending": 0 if self.publisher is None else self.publisher.pending,
        }

    async def sync(self) -> dict[str, int]:
        """Start the desired streams this shard does not run and stop the ones no longer
        desired; what it started and stopped. Does nothing before the pipeline is up."""
        pipeline, publisher = self.pipeline, self.publisher
        if pipeline is None or publisher is None:
            return {"started": 0, "stopped": 0}
        async with self._sync_lock:
            desired = {s.id: s for s in await self.state.of_shard(self.index)}
            stopped = 0
            for stream_id in [k for k in pipeline.streams if k not in desired]:
                if await pipeline.remove(stream_id):
                    stopped += 1
                    publisher.checkpoint({stream_id: None})
            new = [s for s in desired.values() if s.id not in pipeline.streams]
            windows = await self.state.load_votes([s.id for s in new])
            for stream in new:
                await self._start(pipeline, stream, windows.get(stream.id))
            self.last_sync = time.time()
            return {"started": len(new), "stopped": stopped}

    async def snapshots(self) -> list[dict[str, Any]]:
        """Every stream of this shard as the API shows it."""
        pipeline = self.pipeline
        if pipeline is None:
            return []
        return [self._snapshot(s) for s in pipeline.streams.values()]

    async def snapshot(self, stream_id: str) -> dict[str, Any] | None:
        pipeline = self.pipeline
        state = None if pipeline is None else pipeline.streams.get(stream_id)
        return None if state is None else self._snapshot(state)

    async def stop(self) -> None:
        """Stop every stream (a final ``deepfake.cleared`` for those alerting), publish
        what is queued; for a planned shutdown of the whole cluster."""
        self._main_task.cancel()
        await asyncio.gather(self._main_task, return_exceptions=True)
        if self.pipeline is not None:
            await self.pipeline.close(drain_s=2.0)
        if self.publisher is not None:
            with contextlib.suppress(TimeoutError):
                await self.publisher.flush(self.config.cluster.call_timeout_s)
            await self.publisher.stop()

    # the work

    def _snapshot(self, state: StreamState) -> dict[str, Any]:
        return {**stream_view(state), "shard": self.index, "node": self.node}

    async def _start(
        self, pipeline: Pipeline, stream: DesiredStream, window: dict[str, Any] | None
    ) -> None:
        try:
            state = await pipeline.add_url(stream.url, stream.name, stream_id=stream.id)
        except Exception as error:  # a stream that cannot start must not stop the others
            log(
                logger,
                logging.ERROR,
                "shard.stream_failed",
                stream=stream.name,
                source=redact_url(stream.url),
                error=describe_error(error),
            )
            return
        if window is not None:
            gap = max(0.0, time.time() - float(window.get("saved", time.time())))
            restore_tracks(state, window, gap)
            pipeline.metrics.alerting.labels(state.name).set(1 if state.alerting else 0)
            pipeline.metrics.face_alerts.labels(state.name).set(len(state.alerts))
            log(
                logger,
                logging.INFO,
                "shard.window_restored",
                stream=state.name,
                tracks=",".join(state.track_votes) or "-",
                alerting=",".join(state.alerts) or "-",
                gap_s=round(gap, 2),
            )

    def _window_of(self, stream_id: str) -> dict[str, Any] | None:
        pipeline = self.pipeline
        state = None if pipeline is None else pipeline.streams.get(stream_id)
        return None if state is None else saved_window(state)

    def _checkpoint(self) -> None:
        pipeline, publisher = self.pipeline, self.publisher
        if pipeline is None or publisher is None:
            return
        publisher.checkpoint({k: saved_window(s) for k, s in pipeline.streams.items()})

    def _open(self) -> Pipeline:
        cluster = self.config.cluster

        def remote() -> Segmenter:
            return RemoteSegmenter(cluster.segmenter_max_batch, cluster.call_timeout_s, self.app)

        metrics = PipelineMetrics()
        self.publisher = AlertPublisher(self.state, self._window_of)
        return open_pipeline(
            self.config, [LogSink(), self.publisher], metrics, remote_segmenter=remote
        )

    async def _main(self) -> None:
        """Open and start the pipeline (retried until the segmenter answers), then sync,
        checkpoint and announce the metrics endpoint until cancelled."""
        cluster = self.config.cluster
        attempt = 0
        while self.pipeline is None:
            try:
                pipeline = await asyncio.to_thread(self._open)
                await pipeline.start()
            except Exception as error:
                self.error = describe_error(error)
                delay = backoff_delay(attempt, *RETRY_S)
                log(
                    logger,
                    logging.WARNING,
                    "shard.start_failed",
                    error=self.error,
                    retry_in_s=round(delay, 3),
                )
                await asyncio.sleep(delay)
                attempt += 1
                continue
            self.pipeline, self.error = pipeline, ""
        assert self.publisher is not None
        self.publisher.start()
        endpoint = MetricsEndpoint(
            self.pipeline.metrics.registry,
            shard_name(self.index),
            {"component": "shard", "shard": shard_name(self.index)},
        )
        announcing = asyncio.get_running_loop().create_task(endpoint.announce(self.state))
        log(logger, logging.INFO, "shard.ready", shard=self.index, node=self.node)
        next_checkpoint = time.monotonic() + cluster.checkpoint_interval_s
        try:
            while True:
                try:
                    await self.sync()
                    self.error = ""
                except Exception as error:
                    self.error = describe_error(error)
                    log(logger, logging.WARNING, "shard.sync_failed", error=self.error)
                if time.monotonic() >= next_checkpoint:
                    next_checkpoint = time.monotonic() + cluster.checkpoint_interval_s
                    self._checkpoint()
                await asyncio.sleep(cluster.sync_interval_s)
        finally:
            announcing.cancel()
            endpoint.close()


def saved_window(state: StreamState) -> dict[str, Any]:
    """A stream's vote windows as a checkpoint: each face track's window and last box,
    with the time it was taken."""
    tracks = {
        track: {**voted.vote.checkpoint(), "box": voted.box.as_list()}
        for track, voted in state.track_votes.items()
    }
    return {"tracks": tracks, "saved": time.time()}


def restore_tracks(state: StreamState, window: dict[str, Any], gap: float) -> None:
    """Give a stream starting again the face tracks and windows of :func:`saved_window`,
    their times moved ``gap`` seconds later. A checkpoint from before windows were kept
    per face (no ``tracks``) restores nothing."""
    saved_tracks = window.get("tracks") or {}
    if not saved_tracks:
        return
    boxes: dict[str, Box] = {}
    for track, saved in saved_tracks.items():
        box = Box(*saved["box"])
        vote = state.new_vote()
        vote.restore(shifted(saved, gap))
        state.track_votes[track] = TrackVote(vote, box)
        boxes[track] = box
    state.tracker.resume(boxes)


def shifted(window: dict[str, Any], gap: float) -> dict[str, Any]:
    """A saved vote window with its times moved ``gap`` seconds later."""

    def later(value: float | None) -> float | None:
        return None if value is None else value + gap

    return {
        **window,
        "entries": [[t + gap, score] for t, score in window.get("entries", [])],
        "last_change": later(window.get("last_change")),
        "quiet_until": later(window.get("quiet_until")),
    }
