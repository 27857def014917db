"""What a test does when a real peer or tool it needs is missing.

A real peer (gst-rtsp-server, Chromium, Prometheus, redis-server, Ray, ...) that is not
installed skips the test with the reason, on a developer's machine; under CI (``CI``
set), which must run every such test, the test fails instead. The development samples
in ``../shared/data`` are the exception: CI runs from a fresh clone, which never has
them, so there they skip too, with a reason that says so.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def missing(checks: str, reason: str, *, ci_has_it: bool = True) -> NoReturn:
    """Skip the calling test because a real peer, tool or data set is missing, or fail
    under CI, which must run ``checks`` (unless ``ci_has_it`` is False: CI cannot have
    it, and the skip says so)."""
    if os.environ.get("CI"):
        if ci_has_it:
            pytest.fail(f"CI must run {checks}: {reason}", pytrace=False)
        pytest.skip(f"{reason} (CI runs from a fresh clone without it, so {checks} skip there)")
    pytest.skip(reason)


def shared_data_folder() -> Path:
    """The real development samples beside the checkout, or a skip that names where they
    were looked for (absent on a user's fresh clone and in CI)."""
    if not SHARED_DATA.is_dir():
        missing(
            "the tests on real samples",
            f"real development samples not present at {SHARED_DATA}",
            ci_has_it=False,
        )
    return SHARED_DATA


def free_port() -> int:
    """A TCP port nothing listens on now, on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
