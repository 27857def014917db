"""``benchmarks/cluster.py``: how a window's latency is read from histogram buckets, and
the whole script for a few seconds with tiny settings (the real run takes minutes, by
hand; its figures are in BENCHMARKS.md)."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.peers import missing
from tests.support.scripts import benchmark_script

cluster_benchmark = benchmark_script("cluster")
main, quantile, tree = cluster_benchmark.main, cluster_benchmark.quantile, cluster_benchmark.tree


def test_quantiles_interpolate_within_the_bucket_deltas() -> None:
    # 100 observations: 50 up to 0.1 s, 40 in (0.1, 0.2], 10 in (0.2, 0.5]
    counts = {0.05: 0.0, 0.1: 50.0, 0.2: 90.0, 0.5: 100.0, math.inf: 100.0}
    assert quantile(counts, 0.5) == pytest.approx(0.1)
    assert quantile(counts, 0.7) == pytest.approx(0.15)
    assert quantile(counts, 0.99) == pytest.approx(0.2 + 0.3 * 0.9)
    assert math.isnan(quantile({0.1: 0.0, math.inf: 0.0}, 0.99))
    # beyond the last finite bucket: its bound, as Prometheus answers
    assert quantile({0.1: 0.0, 10.0: 0.0, math.inf: 5.0}, 0.5) == 10.0


def test_the_process_tree_holds_this_process_and_its_children() -> None:
    import subprocess

    child = subprocess.Popen(["sleep", "5"])
    try:
        found = tree()
        assert {os.getpid(), child.pid} <= set(found)
        cpu, rss, pss, title = found[os.getpid()]
        assert cpu > 0 and rss > 0 and 0 < pss <= rss and title == "this script"
        assert found[child.pid][3] == "sleep"
    finally:
        child.kill()
        child.wait()


@pytest.mark.cluster
@pytest.mark.slow
def test_the_benchmark_runs_with_tiny_settings(
    ray_module: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("redis-server") is None:
        missing("the cluster tests", "redis-server is not installed: apt-get install redis-server")
    argv = ["--streams", "2", "--shards", "2", "--window-s", "3", "--warm-up-s", "1"]
    assert main([*argv, "--kills", "1", "--skip-nodes", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "cluster.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| single", "| cluster"))]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "2" and float(cells[3]) > 0  # streams, analysed fps
        assert float(cells[13]) >= 1  # crops per engine call: the engine's metrics were read
    assert "Cluster / single, 2 streams: CPU per stream" in text
    assert "(1 kills): median" in text
    assert "kill 1: shard-0" in capsys.readouterr().out
