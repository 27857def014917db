"""Cluster mode against ``fakewatch serve``, 1 against 2 simulated nodes, and recovery.

    .venv/bin/python benchmarks/cluster.py [--streams 4] [--skip-nodes] [--node-loss]
        [--out docs/benchmarks]

The streams are the demo clip as looping files. Each run waits until every stream is
analysed, warms up ``--warm-up-s`` and measures ``--window-s``: ``fakewatch serve`` hosted
here, then a local one-node Ray cluster (``--shards`` shards, the Serve segmenter, the
front, a redis-server of its own); then (unless ``--skip-nodes``) a 1-CPU head and 1, then
2, CPU-less simulated worker nodes of one shard and ``--per-node`` streams each. Recovery:
``--kills`` shard SIGKILLs, each timed until a new process analyses all its streams; with
``--node-loss``, a worker node removed without a graceful stop, timed until its shard's
streams are analysed on a spare node. Each window measures CPU, RSS and PSS over this
process and all below it (cluster runs leave this process, the driver, out of memory),
analysed fps and drops under load per stream (the API), crops per engine call, and p50
and p99 latency from each ``/metrics`` histogram (interpolated as ``histogram_quantile``
does). Every process shares this machine's cores: a simulated node adds no CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import queue
import shutil
import signal
import statistics
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common

from fakewatch.engines.machine import describe_machine, usable_cores

LATENCY = "fakewatch_end_to_end_latency_seconds_bucket"
CROPS, CALLS = "fakewatch_inference_batch_size_sum", "fakewatch_inference_batch_size_count"
ENGINE_S = "fakewatch_inference_seconds_sum"
SCRAPED = {LATENCY: "le", CROPS: None, CALLS: None, ENGINE_S: None}
LOAD_DROPS = ("queue_full", "stale", "engine_failed", "detector_failed")
RAY_TMP = Path(tempfile.gettempdir()) / "ray"
Fetch = Callable[[], Any]


def api(base: str, method: str, path: str, body: Any = None) -> Any:
    """One call to the API; the decoded JSON (None for an empty reply)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(base + path, data, headers, method=method)
    with urllib.request.urlopen(request, timeout=10) as reply:
        text = reply.read()
    return json.loads(text) if text else None


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, every_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:g} s")
        time.sleep(every_s)


def title(pid: int) -> str:
    """A process's title: Ray's workers are ``ray::<actor>``, Python ones their script."""
    if pid == os.getpid():
        return "this script"
    with contextlib.suppress(OSError):
        words = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        words = [w for w in " ".join(words).split() if not w.startswith("-")] or ["?"]
        python = Path(words[0]).name.startswith("python") and len(words) > 1
        return Path(words[1] if python else words[0]).name.split(".")[0]
    return "?"


def tree() -> dict[int, tuple[float, int, int, str]]:
    """pid -> (CPU seconds, RSS, PSS, title) of this process and every one below it."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):  # ended meanwhile
            children[int(Path(entry, "stat").read_text().rsplit(")", 1)[1].split()[1])].append(
                int(entry.name)
            )
    found: dict[int, tuple[float, int, int, str]] = {}
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            pss = next(
                (int(line.split()[1]) * 1024 for line in rollup if line.startswith("Pss:")), 0
            )
            found[pid] = (common.cpu_seconds(pid), common.rss_bytes(pid), pss, title(pid))
            todo += children[pid]
    return found


def quantile(counts: dict[float, float], q: float) -> float:
    """``q`` (0..1) of cumulative bucket ``counts``, linear within a bucket (Prometheus's
    ``histogram_quantile``); NaN when empty, the last finite bound when beyond it."""
    ordered = sorted(counts.items())
    if not ordered or ordered[-1][1] <= 0:
        return float("nan")
    rank, lower, below = q * ordered[-1][1], 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return lower


@dataclass
class Result:
    """One measured window of one run."""

    run: str
    seconds: float
    machine: float
    rss: int
    pss: int
    processes: int
    analysed: list[float]
    dropped: float
    p50: float
    p99: float
    crops_per_call: float
    engine_ms_per_crop: float
    by_process: dict[str, float]  # CPU seconds in the window by process title

    @property
    def cpu_s(self) -> float:
        return sum(self.by_process.values())

    @property
    def fps(self) -> float:
        return sum(self.analysed) / self.seconds

    @property
    def cpu_per_stream(self) -> float:
        return self.cpu_s / self.seconds / len(self.analysed)

    def row(self) -> str:
        per_stream = [a / self.seconds for a in self.analysed]
        return (
            f"| {self.run} | {len(self.analysed)} | {self.processes} | {self.fps:.1f} "
            f"| {statistics.mean(per_stream):.2f} / {min(per_stream):.2f} | {self.dropped:.0f} "
            f"| {self.p50 * 1000:.0f} | {self.p99 * 1000:.0f} | {self.cpu_s / self.seconds:.2f} "
            f"| {self.cpu_per_stream:.3f} | {self.machine:.0%} | {self.rss / 2**20:.0f} "
            f"| {self.pss / 2**20:.0f} | {self.crops_per_call:.2f} "
            f"| {self.engine_ms_per_crop:.1f} |"
        )


HEADER = (
    "| run | streams | processes | analysed fps | fps per stream mean / min (of 5) "
    "| dropped under load | p50 ms | p99 ms | CPU s/s | CPU s/s per stream | machine CPU "
    "| RSS MiB | PSS MiB | crops per engine call | engine ms per crop |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def measure(run: str, snapshots: Fetch, metrics: Fetch, window_s: float, with_self: bool) -> Result:
    """The window's figures (module doc). ``snapshots`` gives the API's streams,
    ``metrics`` ``{target: its /metrics text}``."""
    first, first_metrics = {s["id"]: s for s in snapshots()}, metrics()
    first_tree, first_busy, started = tree(), common.machine_busy_s(), time.monotonic()
    time.sleep(window_s)
    last_tree, last_busy, seconds = tree(), common.machine_busy_s(), time.monotonic() - started
    last, last_metrics = {s["id"]: s for s in snapshots()}, metrics()
    by_process: dict[str, float] = defaultdict(float)
    for pid, (cpu_s, _, _, name) in last_tree.items():
        by_process[name] += cpu_s - first_tree.get(pid, (0.0,))[0]
    kept = [v for p, v in last_tree.items() if with_self or p != os.getpid()]
    deltas: dict[tuple[str, str], float] = defaultdict(float)
    for key in set(first_metrics) & set(last_metrics):
        before = common.scrape(first_metrics[key], SCRAPED)
        for (name, le), value in common.scrape(last_metrics[key], SCRAPED).items():
            if name == LATENCY or not key.startswith("shard"):  # engine calls: not a shard's
                deltas[name, le] += value - before.get((name, le), 0.0)
    crops = deltas[CROPS, ""]

    def drops(streams: dict[str, Any]) -> float:
        return sum(s["frames_dropped"].get(r, 0) for s in streams.values() for r in LOAD_DROPS)

    latency = {float(le): v for (name, le), v in deltas.items() if name == LATENCY}
    result = Result(
        run,
        seconds,
        (last_busy[0] - first_busy[0]) / max(1e-9, last_busy[1] - first_busy[1]),
        sum(v[1] for v in kept),
        sum(v[2] for v in kept),
        len(kept),
        [
            s["frames_analysed"] - first.get(k, {}).get("frames_analysed", 0)
            for k, s in last.items()
        ],
        drops(last) - drops(first),
        quantile(latency, 0.5),
        quantile(latency, 0.99),
        crops / max(1.0, deltas[CALLS, ""]),
        deltas[ENGINE_S, ""] / max(1.0, crops) * 1000,
        dict(by_process),
    )
    print(result.row(), flush=True)
    return result


def settle(snapshots: Fetch, metrics: Fetch, streams: int, targets: int, warm_up_s: float) -> None:
    """Wait until ``streams`` streams have each analysed a few frames and ``targets``
    metrics endpoints answer, then ``warm_up_s``."""

    def analysing() -> bool:
        listed = snapshots()
        ready = all(s.get("frames_analysed", 0) > 2 for s in listed)
        return len(listed) == streams and ready and len(metrics()) >= targets

    wait_until(analysing, 120, "every stream analysed", every_s=0.5)
    time.sleep(warm_up_s)


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


def single_run(clip: Path, folder: Path, args: argparse.Namespace) -> Result:
    """``fakewatch serve`` on an event loop in a thread of this process."""
    started: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        # both sides analyse every stream at the full rate: adaptive analysis off
        overrides = {"sources.loop_files": True, "analysis.adaptive": False}
        async with common.hosted(folder, **overrides) as (_, base):
            started.put(base)
            while not stop.is_set():
                await asyncio.sleep(0.1)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    base = started.get(timeout=120)
    try:
        for i in range(args.streams):
            api(base, "POST", "/api/streams", {"url": str(clip), "name": f"cam-{i}"})

        def snapshots() -> Any:
            return api(base, "GET", "/api/streams")["streams"]

        def metrics() -> Any:
            return {"service": get_text(base + "/metrics")}

        settle(snapshots, metrics, args.streams, 1, args.warm_up_s)
        return measure("single (`fakewatch serve`)", snapshots, metrics, args.window_s, True)
    finally:
        stop.set()
        thread.join(60)


@contextlib.contextmanager
def cluster_up(
    redis_url: str, folder: Path, shards: int, address: str | None = None, **init: Any
) -> Iterator[tuple[Any, str]]:
    """Ray connected (a new local cluster unless ``address``), the application started:
    its config and the front's URL. Serve and Ray shut down on the way out."""
    import ray
    import redis
    from ray import serve

    from fakewatch.cluster import launch
    from fakewatch.cluster.config import load_cluster_config

    with redis.Redis.from_url(redis_url, socket_timeout=5) as client:
        client.flushdb()  # the previous run's streams
    settings = {
        "server.port": 0,
        "cluster.redis_url": redis_url,
        "cluster.shards": shards,
        "cluster.segmenter_max_replicas": 1,
        "limits.max_streams": 64,
        "sources.allow_local_files": True,
        "sources.loop_files": True,
        "analysis.adaptive": False,
        "evidence.folder": str(folder / "evidence"),
        "webhooks.outbox": str(folder / "outbox.sqlite"),
    }
    config = load_cluster_config(environ={}, overrides=settings)
    try:
        ray.init(address=address, namespace=config.cluster.namespace, log_to_driver=False, **init)
        started = time.monotonic()
        _, url = launch.start(config, timeout_s=180)
        print(f"  cluster up in {time.monotonic() - started:.1f} s", flush=True)
        yield config, url
        launch.stop(config)
    finally:
        if ray.is_initialized():
            with contextlib.suppress(Exception):
                serve.shutdown()
            ray.shutdown()


def cluster_streams(
    url: str, clip: Path, count: int, shards: int, warm_up_s: float
) -> tuple[Fetch, Fetch]:
    """``count`` streams, an equal share on each shard, settled; the fetchers for them."""
    share, held, added = math.ceil(count / shards), [0] * shards, 0
    for attempt in range(40 * count):
        if added == count:
            break
        stream = api(url, "POST", "/api/streams", {"url": str(clip), "name": f"cam-{attempt}"})
        if held[stream["shard"]] >= share:
            api(url, "DELETE", f"/api/streams/{stream['id']}")
        else:
            held[stream["shard"]] += 1
            added += 1
    assert added == count, f"could not balance {count} streams over {shards} shards"

    def snapshots() -> Any:
        return api(url, "GET", "/api/streams")["streams"]

    def metrics() -> Any:
        texts = {}
        for group in api(url, "GET", "/cluster/targets"):
            labels = group["labels"]
            name = labels.get("shard") or labels.get("replica")
            for address in group["targets"]:
                with contextlib.suppress(OSError):  # gone since it last announced
                    texts[f"{labels.get('component')}:{name}@{address}"] = get_text(
                        f"http://{address}/metrics"
                    )
        return texts

    settle(snapshots, metrics, count, shards + 1, warm_up_s)  # and the segmenter
    return snapshots, metrics


def shard(config: Any, index: int) -> Any:
    import ray

    from fakewatch.cluster.shard import shard_name

    return ray.get_actor(shard_name(index), namespace=config.cluster.namespace)


def resumed_after(config: Any, index: int, act: Callable[[], None], moved: Fetch) -> float:
    """Seconds from ``act()`` until shard ``index``'s ping passes ``moved(ping)`` and it
    analyses every one of its streams again."""
    import ray

    actor = shard(config, index)
    mine = [s["id"] for s in ray.get(actor.snapshots.remote(), timeout=10)]
    started = time.monotonic()
    act()

    def analysing() -> bool:
        try:
            answer = ray.get(actor.ping.remote(), timeout=5)
            now = {s["id"]: s for s in ray.get(actor.snapshots.remote(), timeout=5)}
        except Exception:  # restarting
            return False
        return moved(answer) and all(now.get(k, {}).get("frames_analysed", 0) > 0 for k in mine)

    wait_until(analysing, 120, f"shard-{index} analyses its streams again", every_s=0.05)
    return time.monotonic() - started


def local_run(
    clip: Path, redis_url: str, folder: Path, args: argparse.Namespace
) -> tuple[Result, list[float]]:
    """The overhead run on a local one-node cluster, then the shard kills."""
    import ray

    resources = {"stream_slots": args.shards, "fakewatch_front": 1}
    init = {"include_dashboard": False, "num_cpus": usable_cores()}
    with cluster_up(redis_url, folder, args.shards, resources=resources, **init) as (config, url):
        fetch = cluster_streams(url, clip, args.streams, args.shards, args.warm_up_s)
        result = measure("cluster, local 1 node", *fetch, args.window_s, False)
        kills = []
        for i in range(args.kills):
            index = i % args.shards
            pid = ray.get(shard(config, index).ping.remote(), timeout=10)["pid"]
            kills.append(
                resumed_after(
                    config,
                    index,
                    lambda pid=pid: os.kill(pid, signal.SIGKILL),
                    lambda answer, pid=pid: answer["pid"] != pid,
                )
            )
            print(
                f"  kill {i + 1}: shard-{index} (pid {pid}) analysing again after {kills[-1]:.2f} s"
            )
            time.sleep(2)
    return result, kills


def nodes_run(
    clip: Path, redis_url: str, folder: Path, workers: int, args: argparse.Namespace
) -> tuple[Result, float | None]:
    """``workers`` simulated worker nodes, one shard and ``--per-node`` streams each;
    with ``--node-loss`` (2 workers), the seconds to resume a lost node's shard."""
    import ray
    from ray.cluster_utils import Cluster

    head = {"num_cpus": 1, "resources": {"fakewatch_front": 1}, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    lost = None
    try:
        nodes = [
            cluster.add_node(num_cpus=0, resources={"stream_slots": 1}) for _ in range(workers)
        ]
        with cluster_up(redis_url, folder, workers, cluster.address) as (config, url):
            fetch = cluster_streams(url, clip, args.per_node * workers, workers, args.warm_up_s)
            where = [ray.get(shard(config, i).ping.remote(), timeout=10) for i in range(workers)]
            assert len({p["node_id"] for p in where}) == workers, "the shards share a node"
            result = measure(f"cluster, {workers} worker node(s)", *fetch, args.window_s, False)
            if args.node_loss and workers > 1:
                cluster.add_node(num_cpus=0, resources={"stream_slots": 1})  # a spare
                cluster.wait_for_nodes()
                (node,) = [n for n in nodes if n.node_id == where[0]["node_id"]]
                lost = resumed_after(
                    config,
                    0,
                    lambda: cluster.remove_node(node, allow_graceful=False),
                    lambda p: p["node_id"] != where[0]["node_id"],
                )
                print(f"  node lost: shard-0 analysing again on another node after {lost:.1f} s")
    finally:
        cluster.shutdown()
    return result, lost


def report(
    args: argparse.Namespace, results: list[Result], kills: list[float], lost: float | None
) -> list[str]:
    single, local = results[0], results[1]
    lines = [
        f"Machine: {describe_machine()}.",
        f"Streams: the demo clip as looping files at the service's defaults; {args.warm_up_s:g} s "
        f"warm-up, {args.window_s:g} s measured per run. Local cluster: {args.shards} shards. "
        f"Simulated nodes: a 1-CPU head, workers with one shard and {args.per_node} streams each.",
        "",
        HEADER,
        *(r.row() for r in results),
        "",
        f"- Cluster / single, {len(single.analysed)} streams: CPU per stream "
        f"{local.cpu_per_stream / single.cpu_per_stream:.2f}x, RSS {local.rss / single.rss:.2f}x,"
        f" PSS {local.pss / single.pss:.2f}x, p99 latency {local.p99 / single.p99:.2f}x.",
    ]
    for result in results[1:]:
        top = sorted(result.by_process.items(), key=lambda item: -item[1])
        cpu = [f"{k} {v / result.seconds:.2f}" for k, v in top if v / result.seconds >= 0.005]
        lines.append(f"- CPU s/s by process, {result.run}: {', '.join(cpu)}.")
    if len(results) > 3:
        one, two = results[2], results[3]
        lines.append(
            f"- 2 worker nodes / 1: analysed fps {two.fps / one.fps:.2f}x (ideal 2.00), CPU "
            f"{two.cpu_s / two.seconds / (one.cpu_s / one.seconds):.2f}x, p99 "
            f"{two.p99 * 1000:.0f} ms against {one.p99 * 1000:.0f} ms (the same cores)."
        )
    if kills:
        lines.append(
            f"- Shard SIGKILL to its streams analysed again ({len(kills)} kills): median "
            f"{statistics.median(kills):.2f} s, max {max(kills):.2f} s."
        )
    if lost is not None:
        lines.append(
            f"- Node lost without a graceful stop: its shard analysing again in {lost:.1f} s."
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4, help="streams of the overhead runs")
    parser.add_argument("--shards", type=int, default=2, help="shards of the local cluster")
    parser.add_argument("--per-node", type=int, default=2, help="streams per worker node")
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("--warm-up-s", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=5, help="shard kills timed")
    parser.add_argument("--skip-nodes", action="store_true", help="no simulated nodes")
    parser.add_argument("--node-loss", action="store_true", help="time a lost node's recovery")
    parser.add_argument("--out", type=Path, help="write cluster.md here")
    args = parser.parse_args(argv)

    from fakewatch.cli.cluster_command import start_redis
    from fakewatch.training.demo_clip import demo_clips

    clip, _ = demo_clips(common.DEMO_CACHE)
    sessions, started = set(RAY_TMP.glob("session_2*")), time.monotonic()
    print(f"machine: {describe_machine(load=True)}\n{HEADER}", flush=True)
    lost = None
    with tempfile.TemporaryDirectory(prefix="fakewatch-cluster-bench-") as tmp:
        results = [single_run(clip, Path(tmp, "single"), args)]
        redis, redis_url = start_redis(Path(tmp), persist=False)  # not in the single run's tree
        try:
            local, kills = local_run(clip, redis_url, Path(tmp, "local"), args)
            results.append(local)
            for workers in () if args.skip_nodes else (1, 2):
                result, loss = nodes_run(clip, redis_url, Path(tmp, f"n{workers}"), workers, args)
                results.append(result)
                lost = loss if loss is not None else lost
        finally:
            redis.terminate()
            redis.wait(10)
            for session in set(RAY_TMP.glob("session_2*")) - sessions:
                shutil.rmtree(session, ignore_errors=True)
    text = "\n".join(report(args, results, kills, lost))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cluster.md").write_text(text + "\n")
    print(f"\n{text}\n\nbenchmark took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
