"""What the installed package ships: its version and the default engine bundle."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DEFAULT_BUNDLE_DIR = Path(__file__).with_name("default_bundle")


def default_bundle_path() -> Path:
    """The bundle shipped inside the package (used when no ``--engine`` is given)."""
    return DEFAULT_BUNDLE_DIR


def installed_version() -> str:
    """The installed fakewatch version (``0+unknown`` when run from an uninstalled tree)."""
    try:
        return version("fakewatch")
    except PackageNotFoundError:
        return "0+unknown"
