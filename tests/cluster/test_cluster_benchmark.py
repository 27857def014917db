"""``benchmarks/cluster.py`` run as a program with tiny settings: the single service and
a local two-shard cluster measured side by side, one shard killed and timed back, and
the ratios reported. (The real run takes minutes, by hand; its figures are in
BENCHMARKS.md.)

The script is never imported: it runs in a child process, as a person runs it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.benchmarks import run_benchmark
from tests.support.demo import demo_pair
from tests.support.peers import missing

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_the_benchmark_runs_with_tiny_settings(ray_module: Any, tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        missing("the cluster tests", "redis-server is not installed: apt-get install redis-server")
    demo_pair("the cluster benchmark")
    argv = ["--streams", "2", "--shards", "2", "--window-s", "3", "--warm-up-s", "1"]
    argv += ["--kills", "1", "--skip-nodes", "--out", str(tmp_path)]
    done = run_benchmark("cluster", *argv)
    text = (tmp_path / "cluster.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| single", "| cluster"))]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "2" and float(cells[3]) > 0  # streams, analysed fps
        assert float(cells[13]) >= 1  # crops per engine call: the engine's metrics were read
    assert "Cluster / single, 2 streams: CPU per stream" in text
    assert "(1 kills): median" in text
    assert "kill 1: shard-0" in done.stdout
