"""Prometheus and promtool for the tests: a real Prometheus server on a free port, and
the deployed configurations pointed at what a test runs.

They come from Debian's ``prometheus`` package; without them the tests that use them are
skipped, or fail when ``CI`` is set: CI must run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import yaml

from fakewatch.stream.rtsp_camera import end_process_group
from tests.support.peers import REPO, free_port, missing

DEBIAN_PACKAGE = "prometheus"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"


def require(tool: str) -> str:
    """The path of ``tool``; skip the calling test without it, or fail under CI."""
    path = shutil.which(tool)
    if path is not None:
        return path
    missing("the Prometheus tests", f"{tool} is not installed: apt-get install {DEBIAN_PACKAGE}")


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    result = subprocess.run(
        [require("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def scrape_config(target: str, folder: Path) -> Path:
    """deploy/prometheus/prometheus.yml pointed at ``target``, scraping every second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "fakewatch"
    job["static_configs"] = [{"targets": [target]}]
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def cluster_scrape_config(front: str, folder: Path) -> Path:
    """deploy/prometheus/cluster.yml pointed at the front ``front``, every second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "cluster.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    (static,) = job["static_configs"]
    static["targets"] = [front]
    (discovery,) = job["http_sd_configs"]
    discovery.update(url=f"http://{front}/cluster/targets", refresh_interval="1s")
    path = folder / "cluster.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.asynccontextmanager
async def prometheus_server(config: Path, folder: Path) -> AsyncIterator[str]:
    """A Prometheus server on a free local port running ``config``: its base URL once
    ready. Stopped (SIGTERM, then SIGKILL after 10 s) on exit."""
    binary = require("prometheus")
    with tempfile.TemporaryFile() as log:
        for _ in range(3):  # the free port may be taken before Prometheus binds it
            url = f"http://127.0.0.1:{free_port()}"
            command = [binary, f"--config.file={config}",
                       f"--storage.tsdb.path={folder / 'tsdb'}",
                       f"--web.listen-address={url.removeprefix('http://')}",
                       "--log.level=warn"]  # fmt: skip
            process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
            try:
                if await wait_ready(url, process):
                    yield url
                    return
            finally:
                end_process_group(process, 10.0)
        log.seek(0)
        raise RuntimeError(f"Prometheus did not start:\n{log.read().decode(errors='replace')}")


async def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 20) -> bool:
    """True once Prometheus answers /-/ready, False when it exited first."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while process.poll() is None:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/-/ready") as response:
                    if response.status == 200:
                        return True
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus at {url} not ready after {timeout} s")
            await asyncio.sleep(0.2)
    return False
