"""Whether the demo alerts for each seed of its manipulation, as MODEL_CARD.md reports.

Usage: .venv/bin/python scripts/demo_seeds.py [--engine BUNDLE] [--seeds 0-8] [--out FILE]

For each seed the demo clip's twin is made with the training recipe's standard
self-blend (``fakewatch demo --seed N`` makes the same twin), both clips are analysed at
the service's 5 frames a second, and their frame scores go through the live service's
own vote (window, minimum frames, hysteresis, the bundle's thresholds and baseline),
the clip played ``--loops`` times in a row as the demo loops it. A seed passes when the
twin raises ``deepfake.suspected`` inside a manipulated span (or within half a window
after it ends) and the real clip raises nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fakewatch.engines.aggregate import window_scores
from fakewatch.engines.analyse import FaceAnalyser
from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.defaults import default_bundle_path
from fakewatch.engines.faces import default_face_detector
from fakewatch.engines.media import iter_frames, probe_video
from fakewatch.engines.runtimes import open_engine
from fakewatch.engines.scan import analysis_stride
from fakewatch.stream.analysis.factory import vote_thresholds
from fakewatch.stream.analysis.vote import Decision, new_vote
from fakewatch.stream.config import VoteConfig
from fakewatch.training.demo_clip import DEFAULT_CACHE, SPAN, demo_clips


def seeds(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def clip_length(clip: Path) -> float:
    """The clip's length in seconds (the demo loops it every so often)."""
    info = probe_video(clip)
    return float(info.frames / info.fps)


def frame_scores(analyser: FaceAnalyser, clip: Path, loops: int) -> list[tuple[float, float]]:
    """(time, score) of every analysed frame with a face, the clip played ``loops``
    times in a row as the demo plays it."""
    frames = list(iter_frames(clip, analysis_stride(clip), 10_000))
    once = [(f.time_s, r.score) for f, r in analyser.analyse(frames) if r.score is not None]
    length = clip_length(clip)
    return [(time + loop * length, score) for loop in range(loops) for time, score in once]


def in_span(time: float, length: float, end: float = SPAN[1]) -> bool:
    """Whether ``time`` (in a clip looped every ``length`` seconds) lies in the span."""
    return bool(SPAN[0] <= time % length < end)


def replay(scores: list[tuple[float, float]], bundle: EngineBundle) -> list[tuple[float, str]]:
    """The decisions the live vote makes on these frames, with their times."""
    settings = VoteConfig()
    vote = new_vote(settings, vote_thresholds(bundle, settings))
    out = []
    for time, score in scores:
        decision = vote.add(time, score)
        if decision is not None:
            out.append((round(time, 2), str(decision)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", type=Path, default=None)
    parser.add_argument("--seeds", type=seeds, default=seeds("0-8"))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--loops", type=int, default=2, help="times the clip plays in a row")
    args = parser.parse_args()
    bundle = EngineBundle.load(args.engine or default_bundle_path())
    analyser = FaceAnalyser(open_engine(bundle, "auto"), default_face_detector())
    clip, _ = demo_clips(args.cache, seed=args.seeds[0])
    real = frame_scores(analyser, clip, args.loops)
    length = clip_length(clip)
    real_decisions = replay(real, bundle)
    late = SPAN[1] + VoteConfig().window_seconds / 2
    results: list[dict[str, Any]] = []
    for seed in args.seeds:
        _, twin = demo_clips(args.cache, seed=seed)
        scores = frame_scores(analyser, twin, args.loops)
        windows = window_scores([s for _, s in scores])
        inside = [w for (t, _), w in zip(scores, windows, strict=True) if in_span(t, length)]
        outside = [w for (t, _), w in zip(scores, windows, strict=True) if t < SPAN[0]]
        decisions = replay(scores, bundle)
        raised = [t for t, d in decisions if d == Decision.SUSPECTED]
        results.append(
            {
                "seed": seed,
                "peak_window_in_span": round(max(inside, default=0.0), 3),
                "peak_window_before_span": round(max(outside, default=0.0), 3),
                "decisions": decisions,
                "alerted_in_span": any(in_span(t, length, late) for t in raised),
            }
        )
    summary = {
        "bundle": bundle.manifest.name,
        "model_sha256": bundle.model_sha256,
        "suspect": bundle.manifest.thresholds["suspect"].value,
        "span_s": SPAN,
        "real_peak_window": round(float(window_scores([s for _, s in real]).max()), 3),
        "real_decisions": real_decisions,
        "seeds": results,
        "passed": sum(r["alerted_in_span"] for r in results),
    }
    print(
        f"suspect {summary['suspect']:.3f}; real clip peak window "
        f"{summary['real_peak_window']}, decisions {real_decisions or 'none'}"
    )
    print("| seed | peak window in the span | before the span | alert in the span |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {r['seed']} | {r['peak_window_in_span']:.3f} | "
            f"{r['peak_window_before_span']:.3f} | {'yes' if r['alerted_in_span'] else 'no'} |"
        )
    print(f"{summary['passed']} of {len(results)} seeds alerted inside the span")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
