"""``benchmarks/startup.py`` run as a program with one run per probe: both services
watch the RTSP camera, both figures are reported for each probe, and the ratio comes
last. (The real run is by hand; its figures are in BENCHMARKS.md.)

The script is never imported: it runs in a child process, as a person runs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.benchmarks import run_benchmark
from tests.support.demo import demo_pair
from tests.support.rtsp import require_rtsp_server

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def test_one_run_per_probe_reports_first_frame_and_first_analysis(tmp_path: Path) -> None:
    require_rtsp_server()
    demo_pair("the startup benchmark")  # the clip it serves
    out = tmp_path / "startup.md"
    done = run_benchmark("startup", "--runs", "1", "--out", str(out), timeout_s=300)
    report = out.read_text()
    for figure in ("first frame", "first analysis"):
        (row,) = [line for line in report.splitlines() if line.startswith(f"| {figure} |")]
        cells = [float(cell) for cell in row.strip("|").split("|")[1:]]
        assert len(cells) == 3 and all(cell > 0 for cell in cells)
    assert done.stdout.rstrip().splitlines()[-1].startswith("first analysis: capped ")
