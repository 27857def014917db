"""``benchmarks/capacity.py``: how a measured interval is judged, and the search for the
largest sustained number of streams (the measurement itself runs for minutes, by hand)."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.scripts import benchmark_script

capacity = benchmark_script("capacity")
Decision, Point, find_capacity = capacity.Decision, capacity.Point, capacity.find_capacity

CPU = {"wall_s": 10.0, "own_cpu_s": 5.0, "own": 0.25, "server": 0.01, "machine": 0.3}


def point(decisions: list[Decision], streams: int = 1, limit_s: float = 0.25) -> Point:
    return Point("fakewatch", streams, 10.0, decisions, CPU, 0, limit_s)


def steady(stream: str, count: int, lag_s: float, start: float = 1000.0) -> list[Decision]:
    """``count`` frames 0.2 s apart, received on time and decided ``lag_s`` later."""
    return [
        Decision(stream, start + i * 0.2 + lag_s, i * 0.2, start + i * 0.2) for i in range(count)
    ]


def test_latency_counts_a_decoder_that_falls_behind() -> None:
    on_time = steady("a", 50, 0.1)
    # the same frames received later and later (a backlog): receipt hides it, pts does not
    behind = [
        Decision(d.stream, d.decided + i * 0.01, d.pts_s, d.received + i * 0.01)
        for i, d in enumerate(on_time)
    ]
    measured = point(behind)
    assert max(measured.latencies(from_pts=False)) == pytest.approx(0.1)
    assert max(measured.latencies()) == pytest.approx(0.1 + 49 * 0.01)
    assert not measured.sustained and measured.lost == 0


def test_frames_not_analysed_count_as_lost() -> None:
    full = steady("a", 51, 0.1)  # 10 s at 5 fps
    assert point(full).lost == 0 and point(full).sustained
    gaps = [d for i, d in enumerate(full) if i % 10 != 5]  # one in ten missing
    assert point(gaps).lost == pytest.approx(5 / 51)
    assert not point(gaps).sustained
    # a stream that analysed nothing loses its whole share
    assert point(full, streams=2).lost == pytest.approx(1 - 51 / (51 + 50))


def test_the_search_raises_then_bisects() -> None:
    tried: list[int] = []

    async def run(_: object, count: int) -> Point:
        tried.append(count)
        streams = [steady(f"s{i}", 51, 0.1 if count <= 9 else 0.4) for i in range(count)]
        return point([d for s in streams for d in s], streams=count)

    best, points = asyncio.run(find_capacity(None, [1, 4, 8, 12, 16], run))  # type: ignore[arg-type]
    assert best == 9
    assert tried == [1, 4, 8, 12, 10, 9]
    assert [p.streams for p in points] == [1, 4, 8, 9, 10, 12]
