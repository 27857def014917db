"""``benchmarks/alert_latency.py`` run as a program on the demo pair: the webhook of
each run arrives signed, its latency is split into vote, sinks and delivery, and the
figures the targets are judged by come last.

The script is never imported: it runs in a child process, as a person runs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.benchmarks import run_benchmark
from tests.support.demo import demo_pair
from tests.support.rtsp import require_rtsp_server

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def test_two_runs_on_the_demo_pair_alert_and_split_their_latency(tmp_path: Path) -> None:
    require_rtsp_server()
    demo_pair("the alert latency benchmark")
    argv = ["--runs", "2", "--source", "demo", "--cache", str(tmp_path)]
    done = run_benchmark("alert_latency", *argv, timeout_s=300)
    lines = done.stdout.splitlines()
    runs = [
        line.split("|")[1:-1] for line in lines if line.startswith(("| 1 | demo", "| 2 | demo"))
    ]
    assert len(runs) == 2
    for run in runs:
        cells = [c.strip() for c in run]
        assert 0 < float(cells[12]) < 15 and cells[13] == "ok", cells  # latency, signature
    split = {line.split("|")[1].strip() for line in lines if line.startswith("| ")}
    assert {"capture -> deepfake.suspected event", "of which evidence files"} <= split
    assert lines[-5] == "alerted 2/2 runs (misses 0)"
    assert lines[-1].startswith("alert p95 ") and lines[-1].endswith("(target 2 s)")
