"""``fakewatch cluster up --local``, as the README shows it, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cluster import flush

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_cluster_up_local_serves_a_stream_then_stops(
    ray_module: object, redis_url: str, demo_clip: Path, tmp_path: Path
) -> None:
    flush(redis_url)
    environ = {
        **os.environ,
        "FAKEWATCH_CLUSTER__REDIS_URL": redis_url,
        "FAKEWATCH_SOURCES__ALLOW_LOCAL_FILES": "true",
        "FAKEWATCH_EVIDENCE__FOLDER": str(tmp_path / "evidence"),
        "FAKEWATCH_WEBHOOKS__OUTBOX": str(tmp_path / "outbox.sqlite"),
    }
    command = [sys.executable, "-m", "fakewatch.cli.main", "cluster", "up", "--local"]
    command += ["--shards", "2", "--port", "0", "--duration", "8"]
    command += ["--stream", f"demo={demo_clip}"]
    done = subprocess.run(
        command, env=environ, capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "fakewatch cluster is up" in done.stdout
    assert "stream.added stream=demo" in output
    assert "stopping the cluster" in done.stdout
