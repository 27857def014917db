"""Memory of the alert clips' ring buffer, per stream, at the default settings.

    .venv/bin/python benchmarks/clip_ring.py [--streams 4] [--seconds 12]

The demo clip (the real talking head ``fakewatch demo`` uses, fetched into ``.cache``
once) is decoded and scaled to 1280x720, and its frames are handed at 30 fps of capture
time to :class:`~fakewatch.stream.sinks.clips.ClipRecorder` as the service's frame
observer does, one face a frame (the clip's own face box, a 224x224 mask), for
``--streams`` streams and ``--seconds`` seconds, longer than ``evidence.clip_before_s``,
so each ring is full. The recorder keeps ``clip_fps`` frames a second of each, scaled to
``clip_height`` and JPEG-encoded. Reported per stream: the ring's frames and the bytes
its JPEGs and masks take (``ClipRecorder.ring_bytes``), the memory Python allocated for
the rings (``tracemalloc``, objects included), and side by side the baseline of keeping
the same frames as raw 720p RGB. The worker's time per kept frame (scale and JPEG) is
shown against decoding a frame of the same clip, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    from fakewatch.engines.crop import Box, crop_face
    from fakewatch.engines.machine import cpu_name, describe_machine
    from fakewatch.stream.analysis.observers import FaceObservation
    from fakewatch.stream.config import EvidenceConfig
    from fakewatch.stream.sinks.clips import ClipRecorder, clip_frame
    from fakewatch.stream.sources.frames import SourceFrame
    from fakewatch.training.demo_clip import DEFAULT_CACHE, demo_clips

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args(argv)

    import av

    real, _ = demo_clips(ROOT / DEFAULT_CACHE)
    started = time.perf_counter()
    with av.open(str(real)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    decode_s = (time.perf_counter() - started) / len(frames)
    native = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
    frames = [cv2.resize(f, (1280, 720), interpolation=cv2.INTER_LINEAR) for f in frames]
    settings = EvidenceConfig()
    height, width = frames[0].shape[:2]
    box = Box(width * 0.35, height * 0.1, width * 0.65, height * 0.6)  # the talking head
    rng = np.random.default_rng(0)
    masks = [rng.random((224, 224), dtype=np.float32) for _ in range(8)]

    tracemalloc.start()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    recorder = ClipRecorder(
        settings.clip_before_s, settings.clip_after_s, settings.clip_fps, settings.clip_height
    )
    recorder.start()
    states: list[Any] = [SimpleNamespace(id=f"s{i}") for i in range(args.streams)]
    start = time.time()
    count = round(args.seconds * 30)
    for index in range(count):
        image = frames[index % len(frames)]
        crop = crop_face(image, box, 224, 1.3)
        face = FaceObservation("t1", box, crop, 0.5, 0.1, masks[index % len(masks)])
        for state in states:
            frame = SourceFrame(image, start + index / 30, index)
            recorder.observe(state, frame, [face])
        while recorder._queue.qsize() > 8:  # the analysis rate, not faster than the worker
            time.sleep(0.005)
    while recorder._queue.qsize():
        time.sleep(0.05)
    time.sleep(0.2)
    frames_kept = [recorder.ring_frames(s.id) for s in states]
    ring_bytes = [recorder.ring_bytes(s.id) for s in states]
    del image, crop, face, frame
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - before
    asyncio.run(recorder.close())
    tracemalloc.stop()

    one = clip_frame(frames[0], 0.0, [], settings.clip_height)
    started = time.perf_counter()
    for image in frames[:60]:
        clip_frame(image, 0.0, [], settings.clip_height)
    encode_s = (time.perf_counter() - started) / 60

    per_stream = sum(ring_bytes) / len(ring_bytes)
    kept = sum(frames_kept) / len(frames_kept)
    raw = kept * width * height * 3
    print(f"machine: {describe_machine(load=True)}")
    print(f"cpu: {cpu_name()}")
    print(
        f"settings: clip_before_s={settings.clip_before_s} clip_fps={settings.clip_fps} "
        f"clip_height={settings.clip_height}; {args.streams} streams of the {native} demo "
        f"clip scaled to {width}x{height}, 30 fps for {args.seconds:g} s; "
        f"dropped {recorder.dropped}"
    )
    print(f"ring frames per stream: {kept:.0f} (bound {recorder.max_frames})")
    print(f"JPEG of one {one_size(one)} frame: {len(one.jpeg) / 1024:.1f} KiB; mask per face 4 KiB")
    print(f"ring bytes per stream (JPEGs and masks): {per_stream / 1024**2:.2f} MiB")
    allocated = traced / args.streams / 1024**2
    print(f"allocated for the rings, per stream (tracemalloc): {allocated:.2f} MiB")
    print(f"baseline, the same frames as raw 720p RGB: {raw / 1024**2:.1f} MiB per stream")
    print(f"ratio raw / ring: {raw / per_stream:.0f}x")
    print(
        f"worker per kept frame (scale + JPEG): {encode_s * 1000:.1f} ms; decoding a {native} "
        f"frame of the clip: {decode_s * 1000:.1f} ms; ratio {encode_s / decode_s:.2f}"
    )
    return 0


def one_size(frame: Any) -> str:
    image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    return f"{image.shape[1]}x{image.shape[0]}"


if __name__ == "__main__":
    sys.exit(main())
