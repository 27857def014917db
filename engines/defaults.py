"""Where the shipped default engine bundle lives."""

from __future__ import annotations

from pathlib import Path

DEFAULT_BUNDLE_DIR = Path(__file__).with_name("default_bundle")


def default_bundle_path() -> Path:
    """The bundle shipped inside the package (used when no ``--engine`` is given)."""
    return DEFAULT_BUNDLE_DIR
