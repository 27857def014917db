"""``benchmarks/tracking.py`` run as a program with tiny settings: every demo clip gets a
row with both boxes' crop IoU and the CPU of a follow against a detection, and the
summary comes last. (The real run is by hand; its figures are in BENCHMARKS.md.)

The script is never imported: it runs in a child process, as a person runs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.benchmarks import run_benchmark
from tests.support.demo import demo_pair

pytestmark = [pytest.mark.slow]


def test_tiny_run_compares_followed_and_frozen_boxes_per_clip(tmp_path: Path) -> None:
    demo_pair("the tracking benchmark")  # its clips are made from the demo clip
    done = run_benchmark("tracking", "--seconds", "3", "--real", "0", "--out", str(tmp_path))
    report = (tmp_path / "tracking.md").read_text()
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in report.splitlines()
        if line.startswith("| demo")
    ]
    assert [row[0] for row in rows] == [
        "demo, still",
        "demo, pan",
        "demo, zoom",
        "demo, pan and zoom",
    ]
    for row in rows:
        followed, frozen = float(row[3]), float(row[4])
        assert 0 < followed <= 1 and 0 < frozen <= 1
        assert float(row[8]) > 0 and float(row[9]) > 0  # follow and detect ms
    last = done.stdout.rstrip().splitlines()[-2:]
    assert last[0].startswith("all clips: crop IoU followed ")
    assert last[1].startswith("CPU per frame: follow ") and "ratio follow / detect" in last[1]
