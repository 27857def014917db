"""Corrupt media: truncated, bit-flipped and garbage H.264 / MPEG-TS / MP4 never crash or
hang a source, a corrupted middle is recovered from at the next keyframe, and
``fakewatch scan`` refuses what it cannot decode with exit status 2 and a clear message.

Inputs are real encodings of the astronaut's face made here with PyAV, spoiled by
hypothesis strategies (bounded: a fixed number of examples, derandomized, a deadline
each), plus the checked-in cases of ``media_cases/`` (``make_media_cases.py`` writes them).
Each goes through the real :class:`~fakewatch.stream.sources.ffmpeg.FFmpegSource` as a
local file: within ``BOUND_S`` it must deliver frames or go ``down`` with an error, and
its decoder thread must still be alive (an exception it did not expect would end it).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakewatch.cli.main import main
from fakewatch.stream.config import SourceConfig
from fakewatch.stream.sources.ffmpeg import FFmpegSource
from fakewatch.stream.sources.frames import LatestFrame, SourceFrame
from fakewatch.stream.sources.source import SourceStatus
from tests.reliability.make_media_cases import encode
from tests.support.media import face_clip

CASES = Path(__file__).resolve().parent / "media_cases"
BOUND_S = 8.0
"""Longest an input may take to deliver frames or to go down with an error."""
FORMATS = ("mp4", "mpegts", "h264")


class Collecting(LatestFrame):
    """A frame slot that also records the presentation time of every frame put in it."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float | None] = []

    def put(self, frame: SourceFrame) -> None:
        self.times.append(frame.pts_s)
        super().put(frame)


@dataclass(frozen=True)
class Outcome:
    frames: int
    down: bool
    detail: str
    error: str | None
    seconds: float
    alive: bool
    times: tuple[float | None, ...]

    @property
    def kind(self) -> str:
        if self.frames:
            return "frames"
        return "clear error" if self.error else "ended, no frame"


async def play(path: Path, bound: float = BOUND_S) -> Outcome:
    """``path`` through a real FFmpegSource until it first goes down (or ``bound``)."""
    frames = Collecting()
    statuses: list[tuple[SourceStatus, str]] = []
    config = SourceConfig(
        allow_local_files=True,
        loop_files=False,
        reconnect_initial_s=60,
        reconnect_max_s=60,
        open_timeout_s=3,
        read_timeout_s=2,
        stall_timeout_s=3,
    )
    source = FFmpegSource(
        str(path), config, frames, lambda status, detail: statuses.append((status, detail))
    )
    started = time.monotonic()
    await source.start()
    while time.monotonic() - started < bound:
        if any(status is SourceStatus.DOWN for status, _ in statuses):
            break
        await asyncio.sleep(0.01)
    seconds = time.monotonic() - started
    thread = source._thread
    alive = thread is not None and thread.is_alive()
    down = [detail for status, detail in statuses if status is SourceStatus.DOWN]
    await source.stop()
    return Outcome(
        frames.received,
        bool(down),
        down[0] if down else "",
        source.last_error,
        seconds,
        alive,
        tuple(frames.times),
    )


def check(outcome: Outcome, what: str) -> None:
    """No hang, no crash, and a clear result: frames, or down with an error."""
    assert outcome.down, f"{what}: not down after {outcome.seconds:.1f} s: {outcome}"
    assert outcome.alive, f"{what}: the decoder thread died: {outcome}"
    assert outcome.frames or outcome.error, f"{what}: down without frames or an error: {outcome}"


@pytest.fixture(scope="module")
def encoded(astronaut: np.ndarray) -> dict[str, bytes]:
    """A face clip (160x120, 12 frames at 24 fps, a keyframe every 4) in each format."""
    frames = face_clip(astronaut, 12, (160, 120))
    return {fmt: encode(fmt, frames) for fmt in FORMATS}


SUFFIX = {"mp4": ".mp4", "mpegts": ".ts", "h264": ".h264"}


@st.composite
def spoiled(draw: st.DrawFn, encoded: dict[str, bytes]) -> tuple[str, str, bytes]:
    """``(format, how, bytes)``: a real encoding truncated, bit-flipped, spliced with
    garbage, or garbage behind its first bytes."""
    fmt = draw(st.sampled_from(FORMATS))
    data = bytearray(encoded[fmt])
    how = draw(st.sampled_from(("truncated", "bit flips", "garbage spliced", "garbage tail")))
    if how == "truncated":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "bit flips":
        flips = draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 7)),
                              min_size=1, max_size=64))  # fmt: skip
        for at, bit in flips:
            data[at] ^= 1 << bit
    elif how == "garbage spliced":
        at = draw(st.integers(0, len(data) - 1))
        junk = draw(st.binary(min_size=1, max_size=4096))
        data[at : at + len(junk)] = junk
    else:
        keep = draw(st.integers(0, min(len(data) - 1, 2048)))
        data = data[:keep] + bytearray(draw(st.binary(min_size=0, max_size=8192)))
    return fmt, how, bytes(data)


@pytest.mark.reliability
def test_fuzzed_media_never_crashes_or_hangs_a_source(encoded: dict[str, bytes]) -> None:
    outcomes: list[tuple[str, str, Outcome]] = []

    @settings(
        max_examples=30,
        deadline=timedelta(seconds=BOUND_S + 4),
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=spoiled(encoded))
    def one(case: tuple[str, str, bytes]) -> None:
        fmt, how, data = case
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"input{SUFFIX[fmt]}"
            path.write_bytes(data)
            outcome = asyncio.run(play(path))
        check(outcome, f"{fmt} {how} ({len(data)} bytes)")
        outcomes.append((fmt, how, outcome))

    one()
    kinds: dict[str, int] = {}
    for _, _, outcome in outcomes:
        kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
    slowest = max(o.seconds for _, _, o in outcomes)
    assert slowest < BOUND_S
    print(
        f"\ncorrupt media (hypothesis): {len(outcomes)} inputs tried "
        f"({', '.join(sorted({f'{f}/{h}' for f, h, _ in outcomes}))}); outcomes: {kinds}; "
        f"max time per input {slowest:.2f} s (bound {BOUND_S:.0f} s)"
    )


def case_files() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.name != "MANIFEST.json")


@pytest.mark.reliability
def test_checked_in_crash_cases_give_frames_or_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = json.loads((CASES / "MANIFEST.json").read_text())
    files = case_files()
    assert {p.name for p in files} == set(manifest), "run make_media_cases.py again"
    assert sum(p.stat().st_size for p in CASES.iterdir()) < 200_000
    results = []
    for path in files:
        expect = manifest[path.name]["expect"]
        outcome = asyncio.run(play(path))
        check(outcome, path.name)
        if expect == "error":
            assert not outcome.frames and outcome.error, (path.name, outcome)
        elif expect == "frames":
            assert outcome.frames, (path.name, outcome)

        # engine side: the file scanner decodes it all or refuses it clearly
        scanned = path
        if path.suffix == ".h264":  # a raw stream: FFmpeg probes it whatever its name
            scanned = tmp_path / f"{path.stem}.mp4"
            scanned.write_bytes(path.read_bytes())
        status = main(["scan", str(scanned), "--quiet"])
        out, err = capsys.readouterr()
        assert status in (0, 2), (path.name, status, err)
        if status == 2:
            assert err.startswith("fakewatch: error: ") and scanned.name in err, (path.name, err)
            assert "Traceback" not in err
        if expect == "error":
            assert status == 2, (path.name, out, err)
        results.append((path.name, outcome, status, err.strip()))

    with capsys.disabled():
        print(f"\ncorrupt media (checked-in cases): {len(results)} files")
        for name, outcome, status, err in results:
            said = err.removeprefix("fakewatch: error: ")[:90] if status else "report written"
            print(
                f"  {name}: source {outcome.kind} ({outcome.frames} frames, "
                f"{outcome.seconds:.2f} s); scan exit {status}: {said}"
            )


def _packets(data: bytes, suffix: str) -> list[tuple[int, int, float, bool]]:
    """``(pos, size, pts_s, keyframe)`` of each video packet, in file order."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"clip{suffix}"
        path.write_bytes(data)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            found = [
                (int(p.pos), int(p.size), float(p.pts * p.time_base), bool(p.is_keyframe))
                for p in container.demux(stream)
                if p.size and p.pos is not None and p.pts is not None
            ]
    return sorted(found)


@pytest.mark.reliability
@pytest.mark.parametrize("fmt", ["mpegts", "mp4"])
def test_a_corrupted_middle_recovers_at_the_next_keyframe(
    fmt: str, astronaut: np.ndarray, tmp_path: Path
) -> None:
    frames = face_clip(astronaut, 48, (320, 240))
    data = bytearray(encode(fmt, frames, keyint=8))
    packets = _packets(bytes(data), SUFFIX[fmt])
    assert len(packets) == 48
    # garbage over three packets in the middle of the third group of pictures
    first, last = packets[20], packets[22]
    start, end = first[0], last[0] + last[1]
    data[start:end] = np.random.default_rng(5).integers(0, 256, end - start, np.uint8).tobytes()
    hit = {p[2] for p in packets if start <= p[0] < end}
    after = [p for p in packets if p[3] and p[2] > max(hit)]
    assert after, "a keyframe follows the corruption"
    keyframe = min(p[2] for p in after)
    expected_after = sorted(p[2] for p in packets if p[2] >= keyframe)

    path = tmp_path / f"corrupted{SUFFIX[fmt]}"
    path.write_bytes(bytes(data))
    outcome = asyncio.run(play(path))
    check(outcome, f"{fmt} with a corrupted middle")
    times = [t for t in outcome.times if t is not None]
    before = [t for t in times if t < min(hit)]
    recovered = [t for t in times if t >= keyframe]
    assert len(before) >= 16, outcome
    assert len(recovered) >= len(expected_after) - 1, (recovered, expected_after)
    assert outcome.detail == "the stream ended", outcome  # it played to the end
    print(
        f"\ncorrupt media ({fmt}, middle): {end - start} bytes of garbage over packets at "
        f"{min(hit):.3f}-{max(hit):.3f} s; {len(before)} frames before, "
        f"{len(times) - len(before) - len(recovered)} between, {len(recovered)} of "
        f"{len(expected_after)} from the next keyframe at {keyframe:.3f} s on; "
        f"{outcome.seconds:.2f} s"
    )
