"""More streams than the machine can analyse: bounded queues, every drop counted, latency
bounded, memory flat.

The load is derived from this machine's measured capacity, so it overloads any machine:
a short probe finds how many frames a second it analyses at most (offering more until it
sheds), then at least 16 looping local 640x480 face clips offer at least 2.5 times that
(5 fps each, or more per stream on a faster machine) through the real service for 30 s
after a 30 s warm-up (RSS settles within about a minute), with a small inference queue
(8 crops, batches of 4) and a 1 s batcher deadline. With ``FAKEWATCH_SOAK_S=600`` (and
``-s`` to see its figures) the same test is the 10-minute soak of BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.load import (
    Figures,
    measure_capacity,
    overload,
    overloading,
    percentile,
    soak_seconds,
)

pytestmark = pytest.mark.reliability

STREAMS, FPS = 16, 5.0
"""The least load offered: streams, and frames a second each."""
OVERLOAD = 2.5
"""The load offered, in times the measured capacity (at least)."""


def test_overload_keeps_queues_bounded_counts_every_drop_and_bounds_latency() -> None:
    capacity = asyncio.run(measure_capacity(streams=STREAMS, fps=FPS))
    streams, fps = overloading(capacity.fps, OVERLOAD, STREAMS, FPS)
    offered = streams * fps
    figures: Figures = asyncio.run(overload(soak_seconds(30.0), streams, fps, warm_up_s=30.0))
    print("\n" + figures.table())

    p99 = percentile(figures.latencies, 99)
    # a frame waits at most one frame interval in its slot (the newest is taken), then
    # for detection (queued behind the other streams), at most deadline_s for its batch,
    # then one engine call
    bound = 1 / fps + figures.detect_p99_bucket + figures.deadline_s + figures.inference_p99_bucket
    unaccounted = {s.name: s.unaccounted for s in figures.totals}
    mib = 1024**2
    print(
        f"{capacity.describe()}\n"
        f"offered {offered:g} frames/s ({streams} streams x {fps:g} fps) = "
        f"{offered / capacity.fps:.1f}x capacity; analysed {figures.fps_analysed:.1f} "
        f"frames/s = {figures.fps_analysed / offered:.0%} of the offered load: overloaded"
    )
    print(
        f"latency p99 {p99:.3f} s <= bound {bound:.3f} s (frame interval {1 / fps:g} + "
        f"detect/track p99 bucket {figures.detect_p99_bucket:g} + deadline "
        f"{figures.deadline_s:g} + engine call p99 bucket {figures.inference_p99_bucket:g})"
    )
    print(f"received - analysed - dropped per stream: {sorted(unaccounted.values())}")
    print(
        f"RSS after warm-up {figures.rss_warm / mib:.0f} MiB, max "
        f"{figures.rss_max_after_warm_up / mib:.0f} MiB, end {figures.rss_end / mib:.0f} MiB"
    )

    # it was overloaded, and shed the load by dropping, not by queueing
    assert offered >= OVERLOAD * capacity.fps
    assert len(figures.totals) == streams
    assert figures.fps_analysed < 0.8 * offered
    assert figures.dropped.get("queue_full", 0) + figures.dropped.get("stale", 0) > 0
    # queues within their bounds: sampled, at every append, and as exported
    assert figures.queue_samples_max <= figures.queue_bound
    assert figures.queue_appends_max is not None
    assert figures.queue_appends_max <= figures.queue_bound
    assert figures.queue_metric_max <= figures.queue_bound
    # every frame received is analysed or dropped with a reason, but those in flight (one
    # in the stream's slot, one being analysed, one whose drop is being counted)
    for name, missing in unaccounted.items():
        assert 0 <= missing <= 3, (name, missing, figures.totals)
    # every stream got some analysis
    assert min(s.analysed for s in figures.per_stream) > 0
    assert p99 <= bound, (p99, bound)
    assert figures.rss_max_after_warm_up <= 1.05 * figures.rss_warm
    assert figures.rss_end <= 1.05 * figures.rss_warm
