"""Real peers for the cluster tests: redis-server, a local Ray cluster, a webhook receiver.

``redis-server`` comes from Debian's ``redis-server`` package and Ray from
``fakewatch[cluster]``; without them the tests are skipped, or fail when ``CI`` is set.
Every wait is bounded: a cluster that does not come up fails its test, never hangs it.
"""

from __future__ import annotations

import base64
import collections
import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import missing

REPO = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"fakewatch cluster tests key!").decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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


@pytest.fixture(scope="session")
def ray_module() -> Any:
    try:
        import ray
        import ray.serve
    except ImportError as error:
        missing(
            "the cluster tests", f"Ray is not installed ({error}): pip install fakewatch[cluster]"
        )
    return ray


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


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of its own, on a free loopback port."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()


def flush(url: str) -> None:
    import redis

    with redis.Redis.from_url(url, socket_timeout=5) as client:
        client.flushdb()


@pytest.fixture(scope="session")
def swap_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven seconds of the demo twin's manipulated span: a face swapped throughout."""
    from fakewatch.cli.demo_command import DEFAULT_CACHE, demo_clips

    _, twin = demo_clips(REPO / DEFAULT_CACHE)
    target = tmp_path_factory.mktemp("clips") / "swapped.mp4"
    with av.open(str(twin)) as source, av.open(str(target), "w") as out:
        video = source.streams.video[0]
        rate = video.average_rate or 30
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        stream.options = {"bf": "0", "g": "30"}
        for frame in source.decode(video):
            seconds = float(frame.time or 0.0)
            if 4.5 <= seconds < 11.5:
                image = frame.to_ndarray(format="rgb24")
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return target


@pytest.fixture(scope="session")
def demo_clip() -> Path:
    from fakewatch.cli.demo_command import DEFAULT_CACHE, demo_clips

    clip, _ = demo_clips(REPO / DEFAULT_CACHE)
    return clip


class WebhookReceiver:
    """An HTTP server that verifies each delivery's signature and keeps what came (a
    thread, for the cluster tests' synchronous Ray driver; tests/stream/test_webhooks.py
    has the asyncio one)."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self
        verifier = Webhook(SECRET)  # the Standard Webhooks reference library

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                message_id = self.headers.get("webhook-id", "")
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verifier.verify(body, headers)
                    ok = True
                except WebhookVerificationError:
                    ok = False
                with receiver.lock:
                    receiver.deliveries.append({"id": message_id, "ok": ok, **json.loads(body)})
                self.send_response(204 if ok else 400)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of(self, kind: str, stream: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                d
                for d in self.deliveries
                if d["type"] == kind and d["data"]["stream"]["name"] == stream
            ]

    def distinct(self, kind: str, stream: str) -> collections.Counter[str]:
        return collections.Counter(d["id"] for d in self.of(kind, stream))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


def cluster_overrides(
    redis_url: str, folder: Path, receiver: WebhookReceiver, shards: int
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
                "secrets": [SECRET],
                "allow_private": True,
                "events": ["deepfake.suspected", "deepfake.cleared"],
            }
        ],
        "webhooks.initial_backoff_s": 0.2,
    }


def api(base: str, method: str, path: str, body: Any = None, timeout_s: float = 10) -> Any:
    """One call to the front's API; the decoded JSON (``None`` for an empty reply)."""
    import urllib.request

    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as reply:
        text = reply.read()
    return json.loads(text) if text else None
