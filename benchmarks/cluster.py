"""Cluster mode against ``fakewatch serve``, 1 against 2 simulated nodes, and recovery.

Usage (from the repository root; about 5 minutes):

    .venv/bin/python benchmarks/cluster.py [--streams 4] [--window-s 30] [--skip-nodes]
        [--node-loss] [--out docs/benchmarks]

The streams are the demo clip (640x360, 24 fps, one face) as looping files, added through
the API until each shard holds an equal share. Each run waits until every stream is
analysed, warms up ``--warm-up-s`` and measures ``--window-s``:

1. **Overhead**: ``--streams`` streams on the single-machine service in this process,
   then on a local one-node Ray cluster (``--shards`` shards, the Serve segmenter and
   front, a redis-server of its own).
2. **Nodes** (unless ``--skip-nodes``): ``ray.cluster_utils.Cluster``, a 1-CPU head (front,
   segmenter) and 1, then 2, CPU-less worker nodes with one ``stream_slots`` each (one
   shard per node) and ``--per-node`` streams per node.
3. **Recovery**: ``--kills`` times a local shard is SIGKILLed (its ``ping()`` pid), timed
   until a new pid analyses all its streams again. ``--node-loss``: the 2-node cluster
   gets a spare worker, then loses ``shard-0``'s node without a graceful stop, timed
   until that shard's streams are analysed on another node.

Measured in each window:

- CPU (utime + stime in ``/proc``) of this process and every process below it: Ray's GCS,
  raylets, workers, shard actors, Serve's controller and replicas, redis-server. This
  process is the service in the single run, the Ray driver in cluster runs.
- RSS and PSS summed over that tree (PSS splits shared pages among the processes mapping
  them). Cluster runs leave this process out: it still holds the single run's engines.
- Analysed frames/s per stream (the API's ``frames_analysed``) and frames dropped under
  load (queue full, stale, engine or detector failed; not those the sampling leaves).
- Crops per engine call and wall ms per crop in the engine (``fakewatch_inference_*`` of
  the service or of the segmenter replicas).
- p50 / p99 of ``fakewatch_end_to_end_latency_seconds`` (receipt to decision) scraped
  from ``/metrics`` (single) or each shard at ``/cluster/targets``, interpolated within
  the bucket deltas (50, 100, 150, 200, 300 ms ...) as ``histogram_quantile`` does.

All processes share this machine's cores: a simulated second node adds no CPU, so the
2-node / 1-node throughput shows that the cluster spreads work without losing any while
the cores are not saturated, not how real machines scale.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import queue
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks.* and tests.* from the checkout this sits in
    sys.path.insert(0, str(ROOT))

from benchmarks.capacity import machine_busy_s  # noqa: E402
from benchmarks.common import machine  # noqa: E402
from tests.support.cluster import api, cluster_overrides, flush, wait_until  # noqa: E402
from tests.support.webhooks import ThreadedReceiver  # noqa: E402

LATENCY = "fakewatch_end_to_end_latency_seconds_bucket"
CROPS, CALLS = "fakewatch_inference_batch_size_sum", "fakewatch_inference_batch_size_count"
ENGINE_S = "fakewatch_inference_seconds_sum"
SCRAPED = (LATENCY, CROPS, CALLS, ENGINE_S)
LOAD_DROPS = ("queue_full", "stale", "engine_failed", "detector_failed")
RAY_TMP = Path(tempfile.gettempdir()) / "ray"
Fetch = Callable[[], Any]


# --- measuring -------------------------------------------------------------------------


def pss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def name_of(pid: int) -> str:
    """A process's title: Ray's workers are ``ray::<actor>``, Python ones their script."""
    if pid == os.getpid():
        return "this script"
    with contextlib.suppress(OSError):
        parts = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        words = [w for w in " ".join(parts).split() if not w.startswith("-")] or ["?"]
        python = Path(words[0]).name.startswith("python") and len(words) > 1
        return Path(words[1] if python else words[0]).name.split(".")[0]  # no ray::X.method
    return "?"


def tree() -> dict[int, tuple[float, int, int, str]]:
    """pid -> (CPU seconds, RSS, PSS, title) of this process and every one below it."""
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    stats: dict[int, list[str]] = {}
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # ended meanwhile
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                stats[int(entry.name)] = fields
                children[int(fields[1])].append(int(entry.name))
    found: dict[int, tuple[float, int, int, str]] = {}
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        if pid in stats:
            fields = stats[pid]
            cpu = (int(fields[11]) + int(fields[12])) / tick
            found[pid] = (cpu, int(fields[21]) * page, pss_bytes(pid), name_of(pid))
            todo += children[pid]
    return found


def scrape(text: str) -> dict[tuple[str, float], float]:
    """(name, bucket bound or 0) -> value of :data:`SCRAPED`, summed over streams."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[tuple[str, float], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in SCRAPED:
                found[sample.name, float(sample.labels.get("le", 0))] += sample.value
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
    """Wall milliseconds of the engine calls per crop."""
    by_process: dict[str, float]
    """CPU seconds in the window by process title."""

    @property
    def cpu_s(self) -> float:
        return sum(self.by_process.values())

    @property
    def streams(self) -> int:
        return len(self.analysed)

    @property
    def fps(self) -> float:
        return sum(self.analysed) / self.seconds

    @property
    def cpu_per_stream(self) -> float:
        return self.cpu_s / self.seconds / self.streams

    def row(self) -> str:
        per_stream = [a / self.seconds for a in self.analysed]
        return (
            f"| {self.run} | {self.streams} | {self.processes} | {self.fps:.1f} "
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
    first_tree, first_busy, started = tree(), machine_busy_s(), time.monotonic()
    time.sleep(window_s)
    last_tree, last_busy, seconds = tree(), machine_busy_s(), time.monotonic() - started
    last, last_metrics = {s["id"]: s for s in snapshots()}, metrics()
    by_process: dict[str, float] = defaultdict(float)
    for pid, (cpu_s, _, _, title) in last_tree.items():
        by_process[title] += cpu_s - first_tree.get(pid, (0.0,))[0]
    kept = [v for p, v in last_tree.items() if with_self or p != os.getpid()]
    deltas: dict[tuple[str, float], float] = defaultdict(float)
    for key in set(first_metrics) & set(last_metrics):
        before = scrape(first_metrics[key])
        for (name, le), value in scrape(last_metrics[key]).items():
            if name == LATENCY or not key.startswith("shard"):  # engine calls: not a shard's
                deltas[name, le] += value - before[name, le]
    latency = {le: v for (name, le), v in deltas.items() if name == LATENCY}
    crops = deltas[CROPS, 0.0]

    def drops(streams: dict[str, Any]) -> float:
        return sum(
            s.get("frames_dropped", {}).get(r, 0) for s in streams.values() for r in LOAD_DROPS
        )

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
        crops / max(1.0, deltas[CALLS, 0.0]),
        deltas[ENGINE_S, 0.0] / max(1.0, crops) * 1000,
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


# --- the single-machine service ---------------------------------------------------------


@contextlib.contextmanager
def single_service(folder: Path) -> Iterator[str]:
    """The service (no token) on an event loop in a thread of this process; its URL."""
    import asyncio

    from tests.support.service import serving

    started: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        try:
            async with serving(folder, token=None) as service:
                started.put(service.base)
                while not stop.is_set():
                    await asyncio.sleep(0.1)
        except BaseException as error:
            started.put(error)
            raise

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="single", daemon=True)
    thread.start()
    base = started.get(timeout=120)
    if isinstance(base, BaseException):
        raise RuntimeError("the single-machine service did not start") from base
    try:
        yield base
    finally:
        stop.set()
        thread.join(60)


def single_run(clip: Path, folder: Path, args: argparse.Namespace) -> Result:
    with single_service(folder) as base:
        for i in range(args.streams):
            api(base, "POST", "/api/streams", {"url": str(clip), "name": f"cam-{i}"})

        def snapshots() -> Any:
            return api(base, "GET", "/api/streams")["streams"]

        def metrics() -> Any:
            return {"service": get_text(base + "/metrics")}

        settle(snapshots, metrics, args.streams, 1, args.warm_up_s)
        return measure("single (`fakewatch serve`)", snapshots, metrics, args.window_s, True)


# --- the cluster -----------------------------------------------------------------------


@contextlib.contextmanager
def cluster_up(
    redis_url: str, folder: Path, shards: int, address: str | None = None, **init: Any
) -> Iterator[tuple[Any, str]]:
    """Ray connected (a new local cluster unless ``address``), the application started:
    its config and the front's URL. Serve and Ray shut down on the way out."""
    import ray
    from ray import serve

    from fakewatch.cluster import launch
    from fakewatch.cluster.config import load_cluster_config

    flush(redis_url)
    receiver = ThreadedReceiver()
    config = load_cluster_config(
        environ={}, overrides=cluster_overrides(redis_url, folder, receiver, shards)
    )
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
        receiver.close()


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
                    key = f"{labels.get('component')}:{name}@{address}"
                    texts[key] = get_text(f"http://{address}/metrics")
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
    init = {"include_dashboard": False, "num_cpus": len(os.sched_getaffinity(0))}
    with cluster_up(redis_url, folder, args.shards, resources=resources, **init) as (config, url):
        fetch = cluster_streams(url, clip, args.streams, args.shards, args.warm_up_s)
        result = measure("cluster, local 1 node", *fetch, args.window_s, False)
        kills = []
        for i in range(args.kills):
            index = i % args.shards
            pid = ray.get(shard(config, index).ping.remote(), timeout=10)["pid"]
            seconds = resumed_after(
                config,
                index,
                lambda pid=pid: os.kill(pid, signal.SIGKILL),
                lambda answer, pid=pid: answer["pid"] != pid,
            )
            print(
                f"  kill {i + 1}: shard-{index} (pid {pid}) analysing again after {seconds:.2f} s"
            )
            kills.append(seconds)
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
            assert len({p["node_id"] for p in where}) == workers, (
                "the shards do not run on distinct nodes"
            )
            run = f"cluster, {workers} worker node{'s' if workers > 1 else ''}"
            result = measure(run, *fetch, args.window_s, False)
            if args.node_loss and workers > 1:
                cluster.add_node(num_cpus=0, resources={"stream_slots": 1})  # a spare
                cluster.wait_for_nodes()
                node_id = where[0]["node_id"]
                (node,) = [n for n in nodes if n.node_id == node_id]
                lost = resumed_after(
                    config,
                    0,
                    lambda: cluster.remove_node(node, allow_graceful=False),
                    lambda p: p["node_id"] != node_id,
                )
                print(f"  node lost: shard-0 analysing again on another node after {lost:.1f} s")
    finally:
        cluster.shutdown()
    return result, lost


# --- report ----------------------------------------------------------------------------


def report(
    args: argparse.Namespace, results: list[Result], kills: list[float], lost: float | None
) -> list[str]:
    single, local = results[0], results[1]
    lines = [
        f"Machine: {machine()}.",
        "Streams: the demo clip (640x360, 24 fps, one face) as looping files, the service's "
        f"defaults (5 fps analysed); {args.warm_up_s:g} s warm-up, {args.window_s:g} s "
        f"measured per run. Local cluster: {args.shards} shards. Simulated nodes: a 1-CPU "
        f"head (front, segmenter), worker nodes with one shard and {args.per_node} streams "
        f"each. Every process shares the machine's {len(os.sched_getaffinity(0))} cores.",
        "",
        HEADER,
        *(r.row() for r in results),
        "",
        f"- Cluster / single, {single.streams} streams: CPU per stream "
        f"{local.cpu_per_stream / single.cpu_per_stream:.2f}x, RSS {local.rss / single.rss:.2f}x,"
        f" PSS {local.pss / single.pss:.2f}x, p99 latency {local.p99 / single.p99:.2f}x.",
    ]
    for result in results[1:]:
        top = sorted(result.by_process.items(), key=lambda item: -item[1])
        lines.append(
            f"- CPU s/s by process, {result.run}: "
            + ", ".join(
                f"{k} {v / result.seconds:.2f}" for k, v in top if v / result.seconds >= 0.005
            )
            + "."
        )
    if len(results) > 3:
        one, two = results[2], results[3]
        lines.append(
            f"- 2 worker nodes / 1: analysed fps {two.fps / one.fps:.2f}x (ideal 2.00), CPU "
            f"{two.cpu_s / two.seconds / (one.cpu_s / one.seconds):.2f}x, p99 "
            f"{two.p99 * 1000:.0f} ms against {one.p99 * 1000:.0f} ms. The simulated nodes "
            "share the same cores: this shows the work spread, not machines scaling."
        )
    if kills:
        lines.append(
            f"- Shard SIGKILL to its streams analysed again ({len(kills)} kills): median "
            f"{statistics.median(kills):.2f} s, max {max(kills):.2f} s "
            f"({', '.join(f'{k:.2f}' for k in kills)})."
        )
    if lost is not None:
        lines.append(
            f"- Node lost without a graceful stop to its shard's streams analysed on a spare "
            f"node: {lost:.1f} s (Ray's health checks first declare the node dead)."
        )
    return lines


def run_all(args: argparse.Namespace) -> int:
    import ray  # noqa: F401  (fails early without fakewatch[cluster])

    from fakewatch.cli.cluster_command import start_redis
    from fakewatch.training.demo_clip import DEFAULT_CACHE, demo_clips

    clip, _ = demo_clips(ROOT / DEFAULT_CACHE)
    sessions, started = set(RAY_TMP.glob("session_2*")), time.monotonic()
    print(f"machine: {machine(load=True)}\n{HEADER}", flush=True)
    lost = None
    with tempfile.TemporaryDirectory(prefix="fakewatch-cluster-bench-") as tmp:
        results = [single_run(clip, Path(tmp, "single"), args)]
        # started after the single run, so not in its process tree
        redis, redis_url = start_redis(Path(tmp), persist=False)
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
    return run_all(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
