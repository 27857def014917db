"""RTSP sources through outages and stalls, against the real service and a real RTSP server.

* The server is killed and restarted ten times while streaming: each time the stream is
  analysed again within the reconnect cap + 5 s, the reconnect delays (measured between
  a failed attempt and the next one) double with jitter up to the cap, nothing crashes,
  and a second stream from a second server keeps its analysis rate throughout.
* A source that keeps its socket open but sends nothing (the server frozen with
  SIGSTOP; a TCP relay that turns into a black hole) is marked down within the read
  timeout and reconnects once the server answers again; a server that accepts and never
  answers never hangs an attempt for longer than the open timeout.

Each test prints its figures (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fakewatch.stream.analysis.events import EventType
from fakewatch.stream.analysis.observers import FaceObservation
from fakewatch.stream.analysis.pipeline import Pipeline
from fakewatch.stream.analysis.state import StreamState
from fakewatch.stream.sources.frames import SourceFrame
from fakewatch.stream.sources.source import SourceStatus
from tests.support.logs import LogRecords
from tests.support.prometheus import metric_value
from tests.support.rtsp import StartRtspServer
from tests.support.service import Service, serving

pytestmark = [pytest.mark.reliability, pytest.mark.peer]

INITIAL_S, CAP_S, JITTER = 0.2, 2.0, 0.2
FPS = 5.0
OUTAGE_CONFIG: dict[str, Any] = {
    "sources.reconnect_initial_s": INITIAL_S,
    "sources.reconnect_max_s": CAP_S,
    "sources.reconnect_jitter": JITTER,
    "sources.read_timeout_s": 2.0,
    "sources.open_timeout_s": 3.0,
    "sources.stall_timeout_s": 3.0,
    "analysis.fps": FPS,
    "analysis.adaptive": False,  # the steady stream's rate is measured at the full rate
}


class AnalysedFrames:
    """When each stream's frames were analysed (a pipeline observer)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.times: dict[str, list[tuple[float, float]]] = {}  # id -> (analysed, captured)
        pipeline.observers.append(self._observe)

    def _observe(self, state: StreamState, frame: SourceFrame, _: list[FaceObservation]) -> None:
        self.times.setdefault(state.id, []).append((time.time(), frame.capture_time))

    async def first_captured_after(self, stream: str, since: float, timeout: float) -> float:
        """When the first frame captured after ``since`` was analysed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for analysed, captured in self.times.get(stream, []):
                if captured > since:
                    return analysed
            await asyncio.sleep(0.02)
        raise AssertionError(f"stream {stream} analysed no new frame within {timeout:.0f} s")

    def between(self, stream: str, start: float, end: float) -> list[float]:
        return [t for t, _ in self.times.get(stream, []) if start <= t <= end]


@dataclass
class StatusLog:
    """Every status a source reports, with its wall-clock time (wraps the listener)."""

    entries: list[tuple[float, SourceStatus, str]] = field(default_factory=list)

    @classmethod
    def attach(cls, state: StreamState) -> StatusLog:
        log = cls()
        source = state.source
        listener = source._on_status  # type: ignore[union-attr]

        def record(status: SourceStatus, detail: str) -> None:
            log.entries.append((time.time(), status, detail))
            if listener is not None:
                listener(status, detail)

        source._on_status = record  # type: ignore[union-attr]
        return log

    def next(self, status: SourceStatus, after: float) -> float | None:
        return next((t for t, s, _ in self.entries if s is status and t >= after), None)


@dataclass(frozen=True)
class Reconnect:
    attempt: int
    planned_s: float
    observed_s: float

    @property
    def nominal_s(self) -> float:
        return float(min(CAP_S, INITIAL_S * 2**self.attempt))


def reconnects(logs: LogRecords, statuses: StatusLog, source: str) -> list[Reconnect]:
    """Each ``source.reconnect`` of ``source`` and the time until its next attempt began."""
    found = []
    for record in logs.named("source.reconnect"):
        fields = record.fields  # type: ignore[attr-defined]
        if fields["source"] != source:
            continue
        began = statuses.next(SourceStatus.CONNECTING, record.created)
        if began is not None:
            found.append(Reconnect(fields["attempt"], fields["delay_s"], began - record.created))
    return found


def test_rtsp_server_killed_ten_times_recovers_within_the_cap_and_spares_other_streams(
    rtsp_server: StartRtspServer, long_face_video: Path, fakewatch_logs: LogRecords
) -> None:
    flaky, steady = rtsp_server(long_face_video), rtsp_server(long_face_video)
    cycles, hold_s, long_hold_s = 10, 1.0, 8.0
    bound_s = CAP_S + 5.0

    async def run() -> None:
        async with serving(**OUTAGE_CONFIG) as service:
            analysed = AnalysedFrames(service.pipeline)
            a = await service.add(flaky.url, "flaky")
            b = await service.add(steady.url, "steady")
            statuses = StatusLog.attach(service.pipeline.streams[a])
            for stream in (a, b):
                await service.wait_state(stream, lambda s: s["frames_analysed"] >= 3)
            started = time.time()
            recovery: list[float] = []
            for cycle in range(cycles):
                await asyncio.to_thread(flaky.stop)
                await service.events.wait_for(EventType.STREAM_DOWN, a, cycle + 1, timeout=10)
                # the last outage is long enough for the delays to reach the cap
                await asyncio.sleep(long_hold_s if cycle == cycles - 1 else hold_s)
                await asyncio.to_thread(flaky.start)
                back = time.time()
                again = await analysed.first_captured_after(a, back, timeout=bound_s + 10)
                recovery.append(again - back)
            ended = time.time()

            steady_times = analysed.between(b, started, ended)
            steady_rate = len(steady_times) / (ended - started)
            steady_gap = max(t1 - t0 for t0, t1 in itertools.pairwise(steady_times))
            delays = reconnects(fakewatch_logs, statuses, flaky.bare_url)
            text = await service.metrics_text()
            reconnect_count = metric_value(
                text, "fakewatch_stream_reconnects_total", stream="flaky"
            )
            for stream in (a, b):
                task = service.pipeline.streams[stream].task
                assert task is not None and not task.done(), f"stream {stream} task ended"
            steady_state = await service.state(b)

        print(
            f"\nRTSP outage, {cycles} kills: recovery after the server is back "
            f"max {max(recovery):.2f} s, median {statistics.median(recovery):.2f} s "
            f"(bound {bound_s:.1f} s); per cycle: " + " ".join(f"{r:.2f}" for r in recovery)
        )
        print(
            f"steady stream during the outages: {steady_rate:.2f} fps analysed "
            f"(configured {FPS:g}), longest gap {steady_gap:.2f} s, "
            f"status {steady_state['status']}, reconnects {reconnect_count:g} (flaky)"
        )
        print("reconnect delays (attempt: planned / observed s):")
        for attempt in sorted({d.attempt for d in delays}):
            rows = [d for d in delays if d.attempt == attempt]
            print(
                f"  {attempt}: nominal {rows[0].nominal_s:.2f}, "
                + ", ".join(f"{d.planned_s:.2f}/{d.observed_s:.2f}" for d in rows)
            )

        assert max(recovery) <= bound_s, recovery
        assert fakewatch_logs.errors() == [], [r.getMessage() for r in fakewatch_logs.errors()]
        assert reconnect_count is not None and reconnect_count >= cycles
        # the other stream kept its analysis rate and never went down
        assert steady_rate >= 0.8 * FPS, steady_rate
        assert steady_gap < 2.0, steady_gap
        assert not service.events.of_type(EventType.STREAM_DOWN, b)
        # the delays: as planned, doubling from the initial delay, capped, jittered
        assert len(delays) >= 2 * cycles
        for d in delays:
            assert abs(d.observed_s - d.planned_s) < 0.15, d
            assert (1 - JITTER) * d.nominal_s - 0.01 <= d.planned_s, d
            assert d.planned_s <= (1 + JITTER) * d.nominal_s + 0.01, d
        assert max(d.observed_s for d in delays) <= CAP_S * (1 + JITTER) + 0.15
        by_attempt = {
            n: statistics.mean(d.observed_s for d in delays if d.attempt == n)
            for n in {d.attempt for d in delays}
        }
        growing = [n for n in sorted(by_attempt) if INITIAL_S * 2**n <= CAP_S]
        assert len(growing) >= 4 and any(INITIAL_S * 2**n > CAP_S for n in by_attempt)
        for n, m in itertools.pairwise(growing):
            assert by_attempt[m] > by_attempt[n], by_attempt
        ratios = [d.observed_s / d.nominal_s for d in delays]
        assert max(ratios) - min(ratios) > 0.1, ratios  # jittered, not fixed
        capped = [d.observed_s for d in delays if d.nominal_s == CAP_S]
        assert len(capped) >= 2 and statistics.pstdev(capped) > 0.01, capped

    asyncio.run(run())


class BlackHoleRelay:
    """A TCP relay to an upstream server that can go silent: while held it accepts
    connections and forwards nothing in either direction, sockets left open."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def hold(self, held: bool = True) -> None:
        if held:
            self._flowing.clear()
        else:
            self._flowing.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[BlackHoleRelay]:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            for writer in self._writers:
                writer.close()
            self._flowing.set()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._flowing.wait()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except (OSError, asyncio.CancelledError):
            writer.close()
            return
        self._writers.add(up_writer)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.close()


async def wait_metric_zero(service: Service, stream: str, timeout: float) -> float:
    """When ``fakewatch_stream_up{stream}`` read 0 (polling /metrics every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric_value(await service.metrics_text(), "fakewatch_stream_up", stream=stream) == 0:
            return time.time()
        await asyncio.sleep(0.1)
    raise AssertionError(f"fakewatch_stream_up{{stream={stream!r}}} stayed 1")


STALL_CONFIG: dict[str, Any] = {
    **OUTAGE_CONFIG,
    "sources.reconnect_max_s": 1.0,
    "sources.read_timeout_s": 2.0,
    "sources.open_timeout_s": 2.0,
    "sources.stall_timeout_s": 3.0,
}
# a silent socket ends the connection within the stall timeout (the socket read times
# out); a little more for the status to reach the event loop
WATCHDOG_S = STALL_CONFIG["sources.stall_timeout_s"]
BACK_BOUND_S = 1.0 * (1 + JITTER) + STALL_CONFIG["sources.open_timeout_s"] + 5.0
"""After the server answers again: an attempt under way against the silent server, the
longest backoff, and opening the stream (FFmpeg probes about 2 s of it)."""


def test_a_frozen_rtsp_server_is_marked_down_and_the_stream_reconnects(
    rtsp_server: StartRtspServer, long_face_video: Path, fakewatch_logs: LogRecords
) -> None:
    server = rtsp_server(long_face_video)
    freezes = 2
    figures: list[tuple[float, float, float, float, str, int]] = []

    async def run() -> None:
        async with serving(**STALL_CONFIG) as service:
            analysed = AnalysedFrames(service.pipeline)
            stream = await service.add(server.url, "frozen")
            await service.events.wait_for(EventType.STREAM_UP, stream, timeout=20)
            for n in range(1, freezes + 1):
                await service.wait_state(stream, lambda s: s["status"] == "up")
                await asyncio.sleep(2.0)  # streaming for a while
                try:
                    server.freeze()
                    frozen = time.time()
                    zero_at = await wait_metric_zero(service, "frozen", WATCHDOG_S + 5)
                    downs = await service.events.wait_for(EventType.STREAM_DOWN, stream, n)
                    await asyncio.sleep(3.0)  # attempts meanwhile meet a silent server
                finally:
                    server.freeze(False)
                thawed = time.time()
                ups = await service.events.wait_for(EventType.STREAM_UP, stream, n + 1, 20)
                again = await analysed.first_captured_after(stream, thawed, timeout=20)
                first = next(
                    r for r in fakewatch_logs.named("source.reconnect") if r.created > frozen
                )
                figures.append(
                    (
                        downs[-1].time - frozen,
                        zero_at - frozen,
                        ups[-1].time - thawed,
                        again - thawed,
                        downs[-1].detail,
                        first.fields["attempt"],  # type: ignore[attr-defined]
                    )
                )
            text = await service.metrics_text()

        print(f"\nfrozen RTSP server (SIGSTOP), stall timeout {WATCHDOG_S:g} s:")
        for n, (down_s, metric_s, up_s, analysed_s, detail, attempt) in enumerate(figures, 1):
            print(
                f"  freeze {n}: stream.down after {down_s:.2f} s, fakewatch_stream_up 0 after "
                f"{metric_s:.2f} s ({detail!r}); first reconnect attempt #{attempt}; "
                f"after SIGCONT stream.up in {up_s:.2f} s, analysing in {analysed_s:.2f} s"
            )
        for down_s, metric_s, up_s, _, _, attempt in figures:
            assert down_s <= WATCHDOG_S + 0.5
            assert metric_s <= WATCHDOG_S + 0.5
            assert up_s <= BACK_BOUND_S
            # the connection had delivered frames: the backoff starts over every time
            assert attempt == 0
        assert metric_value(text, "fakewatch_stream_up", stream="frozen") == 1
        assert fakewatch_logs.errors() == []

    asyncio.run(run())


def test_a_black_hole_connection_is_marked_down_and_silent_servers_never_hang_an_attempt(
    rtsp_server: StartRtspServer, long_face_video: Path, fakewatch_logs: LogRecords
) -> None:
    server = rtsp_server(long_face_video)
    open_timeout = STALL_CONFIG["sources.open_timeout_s"]

    async def run() -> None:
        async with (
            serving(**STALL_CONFIG) as service,
            BlackHoleRelay(server.port).running() as relay,
        ):
            analysed = AnalysedFrames(service.pipeline)
            url = f"rtsp://127.0.0.1:{relay.port}{server.mount}"
            live = await service.add(url, "live")
            await service.events.wait_for(EventType.STREAM_UP, live, timeout=20)
            await service.wait_state(live, lambda s: s["frames_analysed"] >= 3)

            relay.hold()
            held = time.time()
            zero_at = await wait_metric_zero(service, "live", WATCHDOG_S + 5)
            (down,) = await service.events.wait_for(EventType.STREAM_DOWN, live)
            # a new stream meets a server that accepts and never answers
            fresh = await service.add(url, "fresh")
            fresh_statuses = StatusLog.attach(service.pipeline.streams[fresh])
            await asyncio.sleep(3 * open_timeout)
            silent = await service.state(fresh)
            text = await service.metrics_text()
            relay.hold(False)
            released = time.time()
            ups = await service.events.wait_for(EventType.STREAM_UP, live, 2, timeout=20)
            await service.events.wait_for(EventType.STREAM_UP, fresh, timeout=20)
            again = await analysed.first_captured_after(live, released, timeout=20)
            fresh_again = await analysed.first_captured_after(fresh, released, timeout=20)

        attempts = []  # how long each attempt against the silent server lasted
        entries = fresh_statuses.entries
        for (t0, s0, _), (t1, s1, _) in itertools.pairwise(entries):
            if s0 is SourceStatus.CONNECTING and s1 is SourceStatus.DOWN and t1 < released:
                attempts.append(t1 - t0)
        down_s, metric_s = down.time - held, zero_at - held
        print(
            f"\nblack-hole relay: stream.down after {down_s:.2f} s, fakewatch_stream_up 0 "
            f"after {metric_s:.2f} s (watchdog {WATCHDOG_S:g} s); after release stream.up "
            f"in {ups[1].time - released:.2f} s, analysing in {again - released:.2f} s"
        )
        print(
            f"silent server (accepts, never answers): {len(attempts)} attempts of "
            + ", ".join(f"{a:.2f}" for a in attempts)
            + f" s (open timeout {open_timeout:g} s), status {silent['status']!r}, "
            f"'{silent['status_detail']}'; analysing {fresh_again - released:.2f} s "
            "after release"
        )
        assert down_s <= WATCHDOG_S + 0.5
        assert metric_s <= WATCHDOG_S + 0.5
        assert ups[1].time - released <= BACK_BOUND_S
        assert attempts and max(attempts) <= open_timeout + 1.0, attempts
        assert silent["status"] != "up" and silent["frames_received"] == 0
        assert metric_value(text, "fakewatch_stream_up", stream="fresh") == 0
        assert fakewatch_logs.errors() == []

    asyncio.run(run())
