"""``benchmarks/capacity.py`` run as a program with tiny settings: both pipelines watch
the RTSP camera (480p30 here), each row is judged, the stage breakdown and the memory run are
reported, and the ratios come last. (The real run takes 25 minutes, by hand; its figures
are in BENCHMARKS.md.)

The script is never imported: it runs in a child process, as a person runs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fakewatch.training.demo_clip import DEFAULT_CACHE
from tests.support.benchmarks import run_benchmark
from tests.support.demo import demo_pair
from tests.support.peers import REPO
from tests.support.rtsp import require_rtsp_server

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def test_tiny_run_measures_both_pipelines_and_prints_the_ratios_last(tmp_path: Path) -> None:
    require_rtsp_server()
    demo_pair("the capacity benchmark")  # the clip it encodes comes from the demo clip
    argv = ["--streams", "1,2", "--naive-streams", "1", "--warm-up-s", "2", "--measure-s", "3"]
    argv += ["--soak-minutes", "0.05", "--cache", str(REPO / DEFAULT_CACHE), "--out", str(tmp_path)]
    argv += ["--height", "480"]
    done = run_benchmark("capacity", *argv)
    report = (tmp_path / "capacity.md").read_text()
    rows = [line.strip("|").split("|") for line in report.splitlines()]
    measured = [
        [c.strip() for c in row] for row in rows if row[0].strip() in ("fakewatch", "naive")
    ]
    assert [(r[0], r[1]) for r in measured][:1] == [("fakewatch", "1")]
    assert ("naive", "1") in [(r[0], r[1]) for r in measured]
    for row in measured:
        assert float(row[2]) > 0 and row[-1] in ("yes", "no")  # analysed fps, sustained
    assert "| decode |" in report and "| infer |" in report and "| all |" in report
    assert "MiB per added stream" in report
    assert "(854x480, 30 fps" in report
    last = done.stdout.rstrip().splitlines()[-2:]
    assert last[0].startswith("capacity: fakewatch ")
    assert last[1].startswith("ratio fakewatch / naive capacity: ")
