"""A local Ray cluster (one node) running the shards, the segmenter and the front.

Streams are the demo's clips read as looping files through the front's API. The figures
each test prints (resume time, crops per segmenter call) are recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakewatch.cluster.config import ClusterServiceConfig, load_cluster_config
from tests.support.cluster import api, cluster_overrides, flush, wait_until
from tests.support.webhooks import ThreadedReceiver

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SHARDS = 4
STREAMS = 4


class LocalCluster:
    def __init__(self, ray: Any, config: ClusterServiceConfig, url: str) -> None:
        self.ray, self.config, self.url = ray, config, url

    def shard(self, index: int) -> Any:
        return self.ray.get_actor(f"shard-{index}", namespace=self.config.cluster.namespace)

    def snapshots(self, index: int) -> dict[str, dict[str, Any]]:
        found = self.ray.get(self.shard(index).snapshots.remote(), timeout=10)
        return {s["id"]: s for s in found}

    def ping(self, index: int) -> dict[str, Any]:
        result: dict[str, Any] = self.ray.get(self.shard(index).ping.remote(), timeout=10)
        return result

    def running(self) -> dict[str, int]:
        """Stream id to the shard running it, from every shard."""
        return {k: i for i in range(SHARDS) for k in self.snapshots(i)}


@pytest.fixture(scope="module")
def cluster(
    ray_module: Any,
    redis_url: str,
    receiver: ThreadedReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalCluster]:
    from ray import serve

    from fakewatch.cluster import launch

    flush(redis_url)
    folder = tmp_path_factory.mktemp("cluster")
    overrides = cluster_overrides(redis_url, folder, receiver, SHARDS)
    # every stream at the full rate (adaptive analysis off), so that crops of several
    # shards meet in the segmenter's batches, which the batching test counts
    overrides |= {"cluster.segmenter_wait_ms": 50, "analysis.adaptive": False}
    config = load_cluster_config(overrides=overrides)
    ray_module.init(
        namespace=config.cluster.namespace,
        include_dashboard=False,
        num_cpus=2,
        resources={"stream_slots": SHARDS, "fakewatch_front": 1},
        log_to_driver=False,
    )
    try:
        started = time.monotonic()
        _, url = launch.start(config, timeout_s=120)
        print(f"\nlocal cluster up in {time.monotonic() - started:.1f} s ({SHARDS} shards)")
        yield LocalCluster(ray_module, config, url)
        launch.stop(config)
    finally:
        serve.shutdown()  # also ends this driver's handles and their background tasks
        ray_module.shutdown()


@pytest.fixture(scope="module")
def streams(cluster: LocalCluster, demo_clip: Path) -> list[str]:
    """Four looping streams of the demo clip, analysed by the shards."""
    ids = [
        api(cluster.url, "POST", "/api/streams", {"url": str(demo_clip), "name": f"cam-{i}"})["id"]
        for i in range(STREAMS)
    ]

    def all_analysed() -> bool:
        listed = api(cluster.url, "GET", "/api/streams")["streams"]
        return len(listed) == STREAMS and all(s.get("frames_analysed", 0) > 2 for s in listed)

    wait_until(all_analysed, 60, "every stream analysed", every_s=0.5)
    return ids


def test_streams_are_spread_over_the_shards_as_their_ids_hash(
    cluster: LocalCluster, streams: list[str]
) -> None:
    from fakewatch.cluster.state import shard_of

    running = cluster.running()
    assert set(running) == set(streams)
    for stream_id, index in running.items():
        assert index == shard_of(stream_id, SHARDS)
    listed = api(cluster.url, "GET", "/api/streams")["streams"]
    assert {s["shard"] for s in listed} == set(running.values())
    print(f"shards running the {STREAMS} streams: {sorted(running.values())}")


def test_a_killed_shard_resumes_its_streams_within_5_s(
    cluster: LocalCluster, streams: list[str]
) -> None:
    running = cluster.running()
    index = running[streams[0]]
    mine = sorted(k for k, i in running.items() if i == index)
    before = cluster.ping(index)
    analysed = {k: s["frames_analysed"] for k, s in cluster.snapshots(index).items()}
    killed = time.monotonic()
    os.kill(before["pid"], signal.SIGKILL)

    def resumed() -> dict[str, Any] | None:
        try:
            ping = cluster.ping(index)
            now = cluster.snapshots(index)
        except Exception:
            return None
        again = ping["pid"] != before["pid"] and all(
            now.get(k, {}).get("frames_analysed", 0) > 0 for k in mine
        )
        return now if again else None

    after = wait_until(resumed, 20, "the killed shard analyses its streams again", every_s=0.05)
    seconds = time.monotonic() - killed
    print(f"shard-{index} (SIGKILL) analysed its {len(mine)} stream(s) again after {seconds:.2f} s")
    assert seconds < 5.0
    assert set(cluster.running()) == set(streams)
    # the restarted process runs the same streams as before the kill, each analysed again
    # by it (its counters began again at 0 with the process)
    assert set(after) == set(analysed) == set(mine)
    assert all(after[k]["frames_analysed"] > 0 for k in mine)


def test_the_segmenter_batches_crops_from_several_shards(
    cluster: LocalCluster, streams: list[str]
) -> None:
    from ray import serve

    from fakewatch.cluster.segmenter import APP, DEPLOYMENT

    handle = serve.get_deployment_handle(DEPLOYMENT, app_name=APP)
    first = handle.stats.remote().result(timeout_s=10)
    time.sleep(6)
    last = handle.stats.remote().result(timeout_s=10)
    calls, crops = last["calls"] - first["calls"], last["crops"] - first["crops"]
    per_call = crops / max(calls, 1)
    print(
        f"segmenter: {crops} crops in {calls} calls over 6 s from {STREAMS} streams on "
        f"{len(set(cluster.running().values()))} shards: {per_call:.2f} crops per call"
    )
    assert calls > 0
    assert per_call > 1.3


def test_api_changes_while_a_shard_restarts_are_not_lost(
    cluster: LocalCluster, streams: list[str], demo_clip: Path
) -> None:
    from fakewatch.cluster.state import shard_of

    running = cluster.running()
    index = running[streams[1]]
    pid = cluster.ping(index)["pid"]
    os.kill(pid, signal.SIGKILL)
    # while it is down: remove one of its streams, add streams until one lands on it
    api(cluster.url, "DELETE", f"/api/streams/{streams[1]}")
    added: list[str] = []
    while not any(shard_of(k, SHARDS) == index for k in added):
        assert len(added) < 40, "no new stream hashed to the restarting shard"
        body = {"url": str(demo_clip), "name": f"late-{len(added)}"}
        added.append(api(cluster.url, "POST", "/api/streams", body)["id"])
    desired = (set(streams) - {streams[1]}) | set(added)

    def converged() -> bool:
        try:
            now = {k: i for i in range(SHARDS) for k in cluster.snapshots(i)}
        except Exception:
            return False
        return set(now) == desired

    wait_until(converged, 30, "the shards run exactly the desired streams", every_s=0.2)
    listed = {s["id"] for s in api(cluster.url, "GET", "/api/streams")["streams"]}
    assert listed == desired
    assert cluster.ping(index)["pid"] != pid
    for stream_id in added:  # leave the module's streams as they were for the next test
        api(cluster.url, "DELETE", f"/api/streams/{stream_id}")
    body = {"url": str(demo_clip), "name": "cam-1"}
    streams[1] = api(cluster.url, "POST", "/api/streams", body)["id"]


def test_the_api_keeps_the_single_machine_answers(cluster: LocalCluster, demo_clip: Path) -> None:
    import urllib.error

    def status(method: str, path: str, body: Any = None) -> int:
        try:
            api(cluster.url, method, path, body)
        except urllib.error.HTTPError as error:
            return error.code
        return 200

    assert status("POST", "/api/streams", {"url": "gopher://x/"}) == 400
    assert status("POST", "/api/streams", {"url": str(demo_clip), "name": "cam-0"}) == 409
    assert status("GET", "/api/streams/nothing") == 404
    assert status("DELETE", "/api/streams/nothing") == 404
    assert status("POST", "/api/webrtc/offer", {"sdp": "v=0", "type": "offer"}) == 501
    # a cluster's streams run with the service's settings
    assert status("PATCH", "/api/streams/cam-0", {"fps": 2}) == 501
    assert status("POST", "/api/streams", {"url": str(demo_clip), "name": "x", "fps": 2}) == 501
    wait_until(lambda: status("GET", "/readyz") == 200, 10, "/readyz says ready")


def test_prometheus_scrapes_every_shard_and_the_cluster_views_have_data(
    cluster: LocalCluster, demo_clip: Path, tmp_path: Path
) -> None:
    import asyncio
    import json
    import urllib.parse
    import urllib.request

    from tests.deploy.dashboard import STREAM, cluster_queries, load_dashboard
    from tests.support.prometheus_server import cluster_scrape_config, prometheus_server

    path = cluster_scrape_config(cluster.url.removeprefix("http://"), tmp_path)
    stream = api(cluster.url, "POST", "/api/streams", {"url": str(demo_clip), "name": STREAM})
    queries = cluster_queries(load_dashboard())
    assert queries

    def query(base: str, promql: str) -> list[Any]:
        address = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(address, timeout=5) as reply:
            result: list[Any] = json.loads(reply.read())["data"]["result"]
        return result

    async def check() -> None:
        async with prometheus_server(path, tmp_path) as base:
            shards_up = f'count(up{{component="shard"}} == 1) == {SHARDS}'
            await asyncio.to_thread(
                wait_until, lambda: query(base, shards_up), 30, "every shard scraped"
            )

            deadline = time.monotonic() + 40
            while empty := [q for q in queries if not await asyncio.to_thread(query, base, q)]:
                assert time.monotonic() < deadline, f"cluster views without data: {empty}"
                await asyncio.sleep(1)
            print(f"Prometheus scraped {SHARDS} shards; {len(queries)} cluster views have data")

    try:
        asyncio.run(check())
    finally:
        api(cluster.url, "DELETE", f"/api/streams/{stream['id']}")
