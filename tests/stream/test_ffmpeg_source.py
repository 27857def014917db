"""FFmpeg sources: URL checks, backoff, real faults (refused, frozen, corrupt, oversized),
the probe limits and the hardware decoder setting."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from av.codec.hwaccel import HWAccel

from fakewatch.stream.backoff import backoff_delay
from fakewatch.stream.config import (
    ConfigError,
    ProbeConfig,
    ServiceConfig,
    SourceConfig,
    describe_config,
    load_config,
)
from fakewatch.stream.logs import LOGGER_NAME
from fakewatch.stream.sources import ffmpeg
from fakewatch.stream.sources.ffmpeg import (
    FFmpegSource,
    SourceURLError,
    check_url,
    hwaccel_error,
    open_options,
    protocol_whitelist,
)
from fakewatch.stream.sources.frames import DropReason, LatestFrame
from fakewatch.stream.sources.source import SourceStatus
from tests.support.media import face_clip, write_video
from tests.support.peers import free_port
from tests.support.rtsp import StartRtspServer


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("file:///etc/passwd", "local files are off"),
        ("/etc/passwd", "local files are off"),
        ("concat:a.mp4|b.mp4", "scheme 'concat' is not allowed"),
        ("subfile,,start,0,end,10,,:/etc/passwd", "not allowed"),
        ("gopher://host/x", "scheme 'gopher' is not allowed"),
        ("rtsp:///live", "has no host"),
        ("rtsp://cam/live\r\nX-Header: y", "control characters"),
    ],
)
def test_urls_outside_the_allowlist_are_refused(url: str, message: str) -> None:
    with pytest.raises(SourceURLError, match=message):
        check_url(url, SourceConfig())


def test_allowed_urls_and_their_protocol_whitelist(tmp_path: Path) -> None:
    config = SourceConfig()
    assert check_url(" rtsp://cam.local:554/live ", config) == "rtsp://cam.local:554/live"
    assert protocol_whitelist("rtsp://cam/live", config) == "rtp,rtsp,tcp,udp"
    assert "file" not in protocol_whitelist("https://cdn/x.m3u8", config)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    local = SourceConfig(allow_local_files=True)
    assert check_url(str(clip), local) == str(clip)
    assert check_url(f"file://{clip}", local) == str(clip)
    with pytest.raises(SourceURLError, match="not a file"):
        check_url(str(tmp_path / "missing.mp4"), local)


def test_backoff_doubles_is_capped_and_jittered() -> None:
    config = SourceConfig(reconnect_initial_s=0.5, reconnect_max_s=4.0, reconnect_jitter=0.2)
    rng = random.Random(0)
    initial, longest, jitter = (
        config.reconnect_initial_s,
        config.reconnect_max_s,
        config.reconnect_jitter,
    )
    delays = [backoff_delay(n, initial, longest, jitter, rng) for n in range(8)]
    for n, delay in enumerate(delays):
        base = min(4.0, 0.5 * 2**n)
        assert 0.8 * base <= delay <= 1.2 * base
        assert delay <= 4.0  # the cap holds after the jitter too
    capped = delays[3:]
    assert len({round(d, 6) for d in capped}) == len(capped)  # none clipped onto the cap


class Recorder:
    """Statuses and drops a source reports, with the time each arrived."""

    def __init__(self) -> None:
        self.statuses: list[tuple[SourceStatus, str, float]] = []
        self.drops: list[DropReason] = []
        self.frames = LatestFrame(on_drop=self.drops.append)

    def on_status(self, status: SourceStatus, detail: str) -> None:
        self.statuses.append((status, detail, time.monotonic()))

    def seen(self, status: SourceStatus) -> int:
        return sum(1 for s, _, _ in self.statuses if s == status)

    async def wait(self, status: SourceStatus, count: int = 1, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.seen(status) < count:
            assert time.monotonic() < deadline, f"no {status} in {self.statuses}"
            await asyncio.sleep(0.05)


def source(url: str, recorder: Recorder, **config: object) -> FFmpegSource:
    options = {"reconnect_initial_s": 0.2, "reconnect_max_s": 1.0, "read_timeout_s": 2.0}
    return FFmpegSource(
        url,
        SourceConfig(**{**options, **config}),  # type: ignore[arg-type]
        recorder.frames,
        recorder.on_status,
        recorder.drops.append,
    )


def test_a_refused_connection_is_retried_with_backoff() -> None:
    recorder = Recorder()

    async def run() -> None:
        src = source(f"rtsp://127.0.0.1:{free_port()}/live", recorder)
        await src.start()
        await recorder.wait(SourceStatus.DOWN, count=3)
        await src.stop()
        assert src.reconnects >= 3
        assert src.last_error and "refused" in src.last_error.lower()
        assert recorder.statuses[-1][0] is SourceStatus.STOPPED

    asyncio.run(run())


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("clips") / "face.mp4"
    return write_video(path, face_clip(astronaut, 80, (640, 480)))


@pytest.mark.peer
def test_a_frozen_server_is_detected_and_the_source_reconnects(
    rtsp_server: StartRtspServer, clip: Path
) -> None:
    server = rtsp_server(clip)
    recorder = Recorder()

    async def run() -> None:
        src = source(server.url, recorder)
        await src.start()
        await recorder.wait(SourceStatus.UP)
        server.freeze()
        frozen_at = time.monotonic()
        await recorder.wait(SourceStatus.DOWN, timeout=15)
        down_after = recorder.statuses[-1][2] - frozen_at
        server.freeze(False)
        server.restart()
        await recorder.wait(SourceStatus.UP, count=2, timeout=20)
        await src.stop()
        assert down_after < 8, f"the stall took {down_after:.1f} s to notice"

    asyncio.run(run())


def test_corrupt_input_is_reported_and_oversized_frames_are_dropped(
    tmp_path: Path, clip: Path
) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    broken, big = Recorder(), Recorder()

    async def run() -> None:
        bad = source(str(garbage), broken, allow_local_files=True)
        await bad.start()
        await broken.wait(SourceStatus.DOWN)
        await bad.stop()
        assert bad.last_error and "InvalidDataError" in bad.last_error

        src = FFmpegSource(
            str(clip), SourceConfig(allow_local_files=True), big.frames, big.on_status,
            big.drops.append, max_width=320, max_height=240,
        )  # fmt: skip
        await src.start()
        deadline = time.monotonic() + 10
        while big.drops.count(DropReason.OVERSIZED) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await src.stop()
        assert big.drops.count(DropReason.OVERSIZED) >= 5
        assert big.frames.received == 0 and big.seen(SourceStatus.UP) == 0

    asyncio.run(run())


class OpenSpy:
    """Records what each ``av.open`` of the source got, and opens for real."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[dict[str, Any]] = []
        self._open = av.open
        monkeypatch.setattr(ffmpeg.av, "open", self)

    def __call__(self, url: str, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self._open(url, **kwargs)


@pytest.mark.peer
def test_the_probe_limits_reach_the_rtsp_open_and_frames_come(
    rtsp_server: StartRtspServer, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = rtsp_server(clip)
    recorder, spy = Recorder(), OpenSpy(monkeypatch)

    async def run() -> None:
        probe = ProbeConfig(analyzeduration_s=0.25, probesize=65536)
        src = source(server.url, recorder, probe=probe)  # type: ignore[arg-type]
        await src.start()
        await recorder.wait(SourceStatus.UP)
        await src.stop()

    asyncio.run(run())
    options = spy.calls[0]["options"]
    assert options["analyzeduration"] == "250000" and options["probesize"] == "65536"
    assert options["rtsp_transport"] == "tcp" and recorder.frames.received > 0


def test_the_probe_limits_apply_to_their_schemes_only(tmp_path: Path) -> None:
    rtsp = open_options("rtsp://cam/live", SourceConfig())
    assert (rtsp["analyzeduration"], rtsp["probesize"]) == ("100000", "32768")
    for url in ("rtmp://host/app/key", "srt://host:9000", "https://cdn/live.m3u8"):
        assert "probesize" not in open_options(url, SourceConfig())
    everywhere = SourceConfig(probe=ProbeConfig(schemes=("rtsp", "srt", "file")))
    assert open_options("srt://host:9000", everywhere)["probesize"] == "32768"
    assert open_options(str(tmp_path / "clip.mp4"), everywhere)["analyzeduration"] == "100000"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sources.probe.probesize", 16),
        ("sources.probe.analyzeduration_s", -1),
        ("sources.probe.analyzeduration_s", "soon"),
        ("sources.hwaccel", "nvdec"),
    ],
)
def test_a_bad_probe_or_hwaccel_setting_is_a_config_error(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(environ={}, overrides={key: value})


def test_a_missing_hardware_decoder_is_said_once_and_frames_are_decoded_in_software(
    clip: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # no Linux FFmpeg has Apple's VideoToolbox: the device is missing here for sure
    assert hwaccel_error("videotoolbox") is not None
    recorder, spy = Recorder(), OpenSpy(monkeypatch)
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)

    async def run() -> None:
        src = source(str(clip), recorder, allow_local_files=True, hwaccel="videotoolbox")
        await src.start()
        deadline = time.monotonic() + 20
        while len(spy.calls) < 2 and time.monotonic() < deadline:  # the file loops
            await asyncio.sleep(0.1)
        await src.stop()
        assert src.hwaccel is None

    asyncio.run(run())
    said = [r for r in caplog.records if r.getMessage() == "source.hwaccel_unavailable"]
    assert len(said) == 1 and len(spy.calls) >= 2, (said, spy.calls)
    assert "no videotoolbox support" in said[0].__dict__["fields"]["error"]
    assert all(call["hwaccel"] is None for call in spy.calls)
    assert recorder.frames.received > 0 and recorder.seen(SourceStatus.UP) == 1


def test_a_usable_hardware_decoder_reaches_the_decoder_open(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU machine the CUDA device is missing: with the device check passed (as on a
    machine with an NVIDIA GPU), FFmpeg's decoder open tries to create the CUDA device
    and fails with its own error, which shows the setting reached it. NVDEC itself is
    not exercised here."""
    if hwaccel_error("cuda") is None:
        pytest.skip("a CUDA device is present: this checks the path without one")
    monkeypatch.setattr(ffmpeg, "hwaccel_error", lambda kind: None)
    recorder, spy = Recorder(), OpenSpy(monkeypatch)

    async def run() -> None:
        src = source(str(clip), recorder, allow_local_files=True, hwaccel="cuda")
        await src.start()
        await recorder.wait(SourceStatus.DOWN)
        await src.stop()
        assert src.hwaccel == "cuda" and src.last_error is not None
        assert "PermissionError" in src.last_error or "not permitted" in src.last_error

    asyncio.run(run())
    assert isinstance(spy.calls[0]["hwaccel"], HWAccel)


def test_the_probe_settings_are_described_and_read_back(tmp_path: Path) -> None:
    described = describe_config(ServiceConfig())
    assert "\n  probe:  # " in described and "\n    probesize: 32768  # " in described
    path = tmp_path / "fakewatch.yaml"
    path.write_text(described.replace("probesize: 32768", "probesize: 65536"))
    assert load_config(path, environ={}).sources.probe.probesize == 65536
