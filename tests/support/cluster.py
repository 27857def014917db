"""Real peers and calls for the cluster tests: redis-server, a small cluster's settings,
calls to the front's API, and bounded waits.

``redis-server`` comes from Debian's ``redis-server`` package; without it the tests are
skipped, or fail when ``CI`` is set. Every wait is bounded: a cluster that does not come
up fails its test, never hangs it.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.peers import missing
from tests.support.webhooks import ThreadedReceiver


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1) -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every_s)
    pytest.fail(f"{what}: not within {timeout_s:g} s (last: {last!r})")


class RedisServer:
    """``redis-server`` on a loopback port, without persistence (``fakewatch cluster up
    --local`` starts it the same way)."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        from fakewatch.cli.cluster_command import start_redis

        if shutil.which("redis-server") is None:
            missing(
                "the cluster tests", "redis-server is not installed: apt-get install redis-server"
            )
        self.process, self.url = start_redis(folder, port, persist=False)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def flush(url: str) -> None:
    """Empty the Redis database at ``url``."""
    import redis

    with redis.Redis.from_url(url, socket_timeout=5) as client:
        client.flushdb()


def cluster_overrides(
    redis_url: str, folder: Path, receiver: ThreadedReceiver, shards: int
) -> dict[str, Any]:
    """A small cluster's settings: its own Redis, files allowed, webhooks to ``receiver``."""
    return {
        "server.port": 0,
        "cluster.redis_url": redis_url,
        "cluster.shards": shards,
        "cluster.segmenter_max_replicas": 1,
        "cluster.alert_claim_idle_s": 2.0,
        "limits.max_streams": 64,
        "sources.allow_local_files": True,
        "sources.loop_files": True,
        "evidence.folder": str(folder / "evidence"),
        "webhooks.outbox": str(folder / "outbox.sqlite"),
        "webhooks.endpoints": [
            {
                "name": "ops",
                "url": receiver.url,
                "secrets": [receiver.secret],
                "allow_private": True,
                "events": ["deepfake.suspected", "deepfake.cleared"],
            }
        ],
        "webhooks.initial_backoff_s": 0.2,
    }


def api(base: str, method: str, path: str, body: Any = None, timeout_s: float = 10) -> Any:
    """One call to the front's API; the decoded JSON (``None`` for an empty reply)."""
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as reply:
        text = reply.read()
    return json.loads(text) if text else None
