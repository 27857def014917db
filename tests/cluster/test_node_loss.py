"""A simulated three-node Ray cluster (``ray.cluster_utils.Cluster``) loses a node.

The head runs the front and the segmenter; two worker nodes offer the ``stream_slots``
the shards need. A stream whose face is swapped throughout is alerting when the node
running its shard is removed without a graceful stop (its raylet and workers killed).
Ray declares the node dead after its health checks fail (about 16 s with Ray's
defaults), restarts the shard on the other worker, and the shard resumes the stream
with its saved vote window: the alert goes on, and the receiver gets exactly one
``deepfake.suspected`` for it.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from fakewatch.cluster.config import load_cluster_config
from fakewatch.cluster.state import shard_of
from tests.support.cluster import api, cluster_overrides, flush, wait_until
from tests.support.webhooks import ThreadedReceiver

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SHARDS = 4


def test_a_lost_node_s_streams_resume_on_another_and_alert_once(
    ray_module: Any,
    redis_url: str,
    receiver: ThreadedReceiver,
    swap_clip: Path,
    tmp_path: Path,
) -> None:
    from ray import serve
    from ray.cluster_utils import Cluster

    from fakewatch.cluster import launch

    ray = ray_module
    flush(redis_url)
    config = load_cluster_config(overrides=cluster_overrides(redis_url, tmp_path, receiver, SHARDS))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {"fakewatch_front": 1},
            "include_dashboard": False,
        },
    )
    workers = [cluster.add_node(num_cpus=0, resources={"stream_slots": SHARDS}) for _ in range(2)]
    try:
        ray.init(address=cluster.address, namespace=config.cluster.namespace, log_to_driver=False)
        _, url = launch.start(config, timeout_s=120)
        stream = api(url, "POST", "/api/streams", {"url": str(swap_clip), "name": "swap"})
        index = shard_of(stream["id"], SHARDS)
        shard = ray.get_actor(f"shard-{index}", namespace=config.cluster.namespace)
        wait_until(lambda: receiver.of("deepfake.suspected", "swap"), 60, "the first alert")
        node_id = ray.get(shard.ping.remote(), timeout=10)["node_id"]
        (lost,) = [w for w in workers if w.node_id == node_id]
        before = ray.get(shard.snapshot.remote(stream["id"]), timeout=10)
        assert before["alerting"]
        removed = time.monotonic()
        cluster.remove_node(lost, allow_graceful=False)

        def analysing_elsewhere() -> Any:
            try:
                ping = ray.get(shard.ping.remote(), timeout=2)
                now = ray.get(shard.snapshot.remote(stream["id"]), timeout=2)
            except Exception:
                return None
            moved = ping["node_id"] != node_id and now and now["frames_analysed"] > 0
            return now if moved else None

        after = wait_until(analysing_elsewhere, 60, "the stream analysed on the other node")
        seconds = time.monotonic() - removed
        print(
            f"\nnode lost: shard-{index}'s stream analysed again on the other node after "
            f"{seconds:.1f} s; alerting after the move: {after['alerting']}"
        )
        assert seconds < 30
        time.sleep(8)  # long enough for a second alert to be raised and delivered, were it
        suspected = receiver.distinct("deepfake.suspected", "swap")
        cleared = receiver.distinct("deepfake.cleared", "swap")
        deliveries = len(receiver.of("deepfake.suspected", "swap"))
        print(
            f"deepfake.suspected: {len(suspected)} alert, {deliveries} deliveries; "
            f"deepfake.cleared: {len(cleared)}"
        )
        assert len(suspected) == 1
        assert not cleared
        assert all(d["ok"] for d in receiver.of("deepfake.suspected", "swap"))
        launch.stop(config)
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()  # also ends this driver's handles and their background tasks
        ray.shutdown()
        cluster.shutdown()
