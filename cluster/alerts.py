"""Events from the shards to the senders, through a Redis Stream.

A shard's :class:`AlertPublisher` is an event sink: it queues each event and writes it,
in order, to the ``alerts`` stream; a decision goes together with its stream's vote
window in one transaction, so the window Redis holds never says "alerting" for an alert
that was not published, nor the reverse. A restarted shard reads that window back and
neither repeats an alert nor forgets one in progress. A decision's id is derived from
its stream and window (:func:`window_event_id`), so any second copy of it is recognised
downstream: the webhook outbox keeps one delivery per id, the evidence store one folder.

:class:`AlertSender` (in the front) reads the stream in the consumer group ``senders``
and hands each event to the single-machine sinks (recent events, evidence, webhooks); it
acknowledges an entry only once every sink took it. Entries a sender took and never
acknowledged (it crashed) are claimed by another sender, or by its successor, after
``cluster.alert_claim_idle_s`` (``XAUTOCLAIM``).
"""

from __future__ import annotations

import asyncio
import collections
import io
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from fakewatch.cluster.state import ClusterState
from fakewatch.engines.crop import Box
from fakewatch.stream.analysis.events import (
    Event,
    EventSink,
    EventType,
    Evidence,
    WindowSummary,
    hand_to_sinks,
)
from fakewatch.stream.backoff import backoff_delay
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log

logger = logging.getLogger(f"{LOGGER_NAME}.cluster.alerts")

GROUP = "senders"
STREAM_MAX_LEN = 100_000
"""Entries the alerts stream keeps (approximately); acknowledged ones are not needed."""
QUEUE_LIMIT = 10_000
"""Events a shard holds while Redis is unreachable; beyond it the oldest are dropped."""
RETRY_S = (0.2, 5.0)
"""First and longest delay between attempts to reach Redis."""
DECISIONS = (EventType.SUSPECTED, EventType.CLEARED)


def window_event_id(event: Event) -> str:
    """A decision's id from its stream, its face track, its type and its window's first
    frame (the event's time when the window is empty): the same decision gives the same
    id, and two faces deciding at once two ids."""
    window = event.window
    start = window.times[0] if window is not None and window.times else event.time
    key = f"{event.stream_id}/{event.track}/{event.type}/{start:.3f}"
    return uuid.uuid5(uuid.NAMESPACE_URL, f"fakewatch:{key}").hex


def encode_event(event: Event) -> dict[str, bytes]:
    """The fields of an alerts-stream entry: the event as JSON and its evidence arrays."""
    window = event.window
    evidence = event.evidence
    document: dict[str, Any] = {
        "id": event.id,
        "type": str(event.type),
        "stream_id": event.stream_id,
        "stream_name": event.stream_name,
        "source": event.source,
        "detail": event.detail,
        "track": event.track,
        "box": None if event.box is None else _box(event.box),
        "tracks": event.tracks,
        "time": event.time,
        "window": None
        if window is None
        else {
            "score": window.score,
            "scores": list(window.scores),
            "times": list(window.times),
            "enter": window.enter_threshold,
            "exit": window.exit_threshold,
        },
        "evidence": None
        if evidence is None
        else {
            "face_box": _box(evidence.face_box),
            "crop_box": _box(evidence.crop_box),
            "score": evidence.score,
            "capture_time": evidence.capture_time,
            "track": evidence.track,
        },
    }
    fields = {"event": json.dumps(document, separators=(",", ":")).encode()}
    if evidence is not None:
        arrays = io.BytesIO()
        np.savez_compressed(arrays, frame=evidence.frame, mask=evidence.mask, crop=evidence.crop)
        fields["evidence"] = arrays.getvalue()
    return fields


def decode_event(fields: dict[bytes, bytes]) -> Event:
    """The event :func:`encode_event` wrote."""
    data = json.loads(fields[b"event"])
    window = data["window"]
    evidence = None
    if data["evidence"] is not None and b"evidence" in fields:
        info = data["evidence"]
        with np.load(io.BytesIO(fields[b"evidence"])) as arrays:
            frame, mask, crop = arrays["frame"], arrays["mask"], arrays["crop"]
        evidence = Evidence(
            frame=frame,
            mask=mask,
            crop=crop,
            face_box=Box(*info["face_box"]),
            crop_box=Box(*info["crop_box"]),
            score=info["score"],
            capture_time=info["capture_time"],
            track=info["track"],
        )
    return Event(
        type=EventType(data["type"]),
        stream_id=data["stream_id"],
        stream_name=data["stream_name"],
        source=data["source"],
        detail=data["detail"],
        track=data["track"],
        box=None if data.get("box") is None else Box(*data["box"]),
        window=None
        if window is None
        else WindowSummary(
            score=window["score"],
            scores=tuple(window["scores"]),
            times=tuple(window["times"]),
            enter_threshold=window["enter"],
            exit_threshold=window["exit"],
        ),
        evidence=evidence,
        tracks=data["tracks"],
        time=data["time"],
        id=data["id"],
    )


def _box(box: Box) -> list[float]:
    return [box.x0, box.y0, box.x1, box.y1]


WindowOf = Callable[[str], dict[str, Any] | None]
"""A stream's vote checkpoint by id (``None`` when the stream is gone)."""


class AlertPublisher:
    """A shard's event sink; see the module docstring. Writes happen in the background,
    in order, retried while Redis is unreachable; :meth:`checkpoint` queues vote windows
    behind the events already queued."""

    def __init__(self, state: ClusterState, window_of: WindowOf) -> None:
        self.state = state
        self._window_of = window_of
        self._queue: collections.deque[tuple[dict[str, bytes] | None, dict[str, Any]]] = (
            collections.deque()
        )
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.dropped = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="publisher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def emit(self, event: Event) -> None:
        windows: dict[str, Any] = {}
        if event.type in DECISIONS:
            event = replace(event, id=window_event_id(event))
            window = self._window_of(event.stream_id)
            if window is not None:
                windows[event.stream_id] = window
        self._put(encode_event(event), windows)

    def checkpoint(self, windows: dict[str, dict[str, Any] | None]) -> None:
        """Save vote windows (``None``: forget the stream's) once the events queued before
        them are written."""
        if windows:
            self._put(None, windows)

    def _put(self, fields: dict[str, bytes] | None, windows: dict[str, Any | None]) -> None:
        self._queue.append((fields, windows))
        while len(self._queue) > QUEUE_LIMIT:
            dropped, _ = self._queue.popleft()
            if dropped is not None:
                self.dropped += 1
                log(logger, logging.ERROR, "alerts.dropped", detail="Redis unreachable too long")
        self._wakeup.set()

    async def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the queue to empty; whether it did."""
        async with asyncio.timeout(timeout_s):
            while self._queue:
                await asyncio.sleep(0.02)
        return True

    async def _run(self) -> None:
        failures = 0  # writes in a row that failed
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                fields, windows = self._queue[0]
                try:
                    await self._write(fields, windows)
                except (RedisError, OSError) as error:
                    delay = backoff_delay(failures, *RETRY_S)
                    log(
                        logger,
                        logging.WARNING,
                        "alerts.write_failed",
                        error=describe_error(error),
                        queued=len(self._queue),
                        retry_in_s=round(delay, 3),
                    )
                    await asyncio.sleep(delay)
                    failures += 1
                    continue
                failures = 0
                self._queue.popleft()
                if fields is not None:
                    self.published += 1

    async def _write(self, fields: dict[str, bytes] | None, windows: dict[str, Any | None]) -> None:
        state = self.state
        async with state.redis.pipeline(transaction=True) as batch:
            if fields is not None:
                batch.xadd(
                    state.key("alerts"),
                    fields,  # type: ignore[arg-type]
                    maxlen=STREAM_MAX_LEN,
                    approximate=True,
                )
            saved = {k: v for k, v in windows.items() if v is not None}
            if saved:
                mapping: dict[Any, Any] = {
                    k: json.dumps(v, separators=(",", ":")) for k, v in saved.items()
                }
                batch.hset(state.key("votes"), mapping=mapping)
            if gone := [k for k, v in windows.items() if v is None]:
                batch.hdel(state.key("votes"), *gone)
            await batch.execute()


class AlertSender:
    """Reads the alerts stream as one consumer of the ``senders`` group; see the module
    docstring."""

    def __init__(
        self,
        state: ClusterState,
        sinks: list[EventSink],
        consumer: str,
        claim_idle_s: float = 10.0,
        block_ms: int = 500,
    ) -> None:
        self.state = state
        self.sinks = sinks
        self.consumer = consumer
        self.claim_idle_ms = round(claim_idle_s * 1000)
        self.block_ms = block_ms
        self.handled = 0
        self.repeats = 0
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()

    @property
    def redis(self) -> aioredis.Redis:
        return self.state.redis

    async def run(self) -> None:
        """Send until cancelled; Redis errors are logged and retried."""
        stream = self.state.key("alerts")
        failures = 0  # reads in a row that failed
        next_claim = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._ensure_group(stream)
                # what this consumer took before and did not finish (a retry after an error)
                await self._handle_all(
                    await self.redis.xreadgroup(GROUP, self.consumer, {stream: "0"}, count=64)
                )
                while True:
                    if loop.time() >= next_claim:
                        next_claim = loop.time() + self.claim_idle_ms / 2000
                        _, claimed, *_ = await self.redis.xautoclaim(
                            stream, GROUP, self.consumer, self.claim_idle_ms, "0-0", count=64
                        )
                        await self._handle_entries(claimed)
                    read = await self.redis.xreadgroup(
                        GROUP, self.consumer, {stream: ">"}, count=32, block=self.block_ms
                    )
                    await self._handle_all(read)
                    failures = 0
            except (RedisError, OSError) as error:
                delay = backoff_delay(failures, *RETRY_S)
                log(
                    logger,
                    logging.WARNING,
                    "alerts.read_failed",
                    error=describe_error(error),
                    retry_in_s=round(delay, 3),
                )
                await asyncio.sleep(delay)
                failures += 1

    async def _ensure_group(self, stream: str) -> None:
        try:
            await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _handle_all(self, read: Any) -> None:
        for _, entries in read or []:
            await self._handle_entries(entries)

    async def _handle_entries(self, entries: list[Any]) -> None:
        for entry_id, fields in entries:
            if not fields:  # deleted from the stream (trimmed) before it was handled
                await self.redis.xack(self.state.key("alerts"), GROUP, entry_id)
                continue
            if await self._handle(fields):
                await self.redis.xack(self.state.key("alerts"), GROUP, entry_id)

    async def _handle(self, fields: dict[bytes, bytes]) -> bool:
        """Hand one event to every sink; whether all took it (else it stays pending)."""
        try:
            event = decode_event(fields)
        except (KeyError, ValueError, TypeError) as error:  # not ours: drop it, say so
            log(logger, logging.ERROR, "alerts.bad_entry", error=describe_error(error))
            return True
        if event.id in self._seen:
            self.repeats += 1
            return True
        ok = await hand_to_sinks(
            self.sinks, event, detail="the alert stays pending and is sent again"
        )
        if ok:
            self.handled += 1
            self._seen[event.id] = None
            while len(self._seen) > 10_000:
                self._seen.popitem(last=False)
        return ok
