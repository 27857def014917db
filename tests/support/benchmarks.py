"""The benchmark scripts run as programs, as a person runs them: their tests check what
a run with tiny settings prints and writes, and never import them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.peers import REPO


def run_benchmark(
    name: str, *argv: str, timeout_s: float = 600, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """``benchmarks/<name>.py ARGV`` in a child process; fails the test unless it exits 0."""
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *argv],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done
