"""Soak the streaming service and print what it measured: drops, latency, memory, queues.

Usage (from the repository root):

    .venv/bin/python benchmarks/soak.py --minutes 10 --scenario overload [--streams 16]
    .venv/bin/python benchmarks/soak.py --minutes 5 --scenario webrtc

The service is the real one (``tests.support.service.serving``: the pipeline, the HTTP
API and its metrics on a free port, in this process), so this process's RSS is the
service's. The scenarios themselves are in ``tests/support/load.py``.

* ``overload``: ``--streams`` looping local 640x480 face clips at ``--fps`` frames a
  second each, more than the machine can analyse, with a small inference queue
  (``batcher.queue_size`` 8) and a 1 s ``batcher.deadline_s``. Measures frames in,
  analysed and dropped by reason (and checks that each stream's frames add up), the
  end-to-end latency of the analysed frames (every one, through a pipeline observer, and
  the p99 bucket of ``fakewatch_end_to_end_latency_seconds``), RSS, and the inference
  queue (sampled every 10 ms, every append recorded, and ``fakewatch_inference_queue_crops``
  scraped every second).
* ``webrtc``: one WHIP publisher (aiortc, 640x480 at ``--fps``) while inference is paused
  (the engine call blocks until the end): frames keep arriving and must all be read
  (aiortc's receive queues sampled) while RSS stays flat.

The reliability tests (``tests/reliability/test_overload.py``,
``tests/reliability/test_webrtc_consumer.py``) run the same scenarios for about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks.* and tests.* from the checkout this sits in
    sys.path.insert(0, str(ROOT))

from benchmarks.common import machine  # noqa: E402
from tests.support.load import overload, webrtc_paused  # noqa: E402

# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("overload", "webrtc"), default="overload")
    parser.add_argument("--minutes", type=float, default=10.0, help="measured time")
    parser.add_argument("--warm-up", type=float, default=60.0, help="seconds before measuring")
    parser.add_argument("--streams", type=int, default=16, help="overload: local streams")
    parser.add_argument("--fps", type=float, help="frames a second per stream (5; webrtc 15)")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    print(f"machine: {machine()}", flush=True)
    if args.scenario == "overload":
        figures = asyncio.run(overload(seconds, args.streams, args.fps or 5.0, args.warm_up))
        unaccounted = [s.unaccounted for s in figures.totals]
        figures.notes.append(
            f"accounting per stream: received - analysed - dropped from {min(unaccounted)} "
            f"to {max(unaccounted)} (frames in flight: 0 to 3)"
        )
        figures.notes.append(
            f"latency bound: deadline {figures.deadline_s:g} s; detect/track p99 bucket "
            f"{figures.detect_p99_bucket:g} s, engine call p99 bucket "
            f"{figures.inference_p99_bucket:g} s"
        )
    else:
        figures = asyncio.run(webrtc_paused(seconds, args.fps or 15.0, args.warm_up))
    print(figures.table(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
