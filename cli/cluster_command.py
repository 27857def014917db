"""``fakewatch cluster``: the service spread over a Ray cluster (``fakewatch[cluster]``).

``cluster up --local`` starts everything on this machine for trying it: Redis (when none
answers at ``cluster.redis_url`` and ``redis-server`` is installed), a one-node Ray
cluster offering ``cluster.shards`` stream slots, the segmenter, the shards and the
front, which serves the API of ``fakewatch serve`` on ``server.port``; Ctrl-C (or
``--duration``) takes it all down. ``cluster up --address ADDR`` deploys onto a running
Ray cluster and returns; it keeps running until ``cluster down --address ADDR``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fakewatch.cli.serve_command import add_service_options, build_config


def register(commands: Any) -> None:
    cluster = commands.add_parser("cluster", help="run the service on a Ray cluster")
    actions = cluster.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start the shards, the segmenter and the API")
    where = up.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="a Ray cluster on this machine")
    where.add_argument("--address", help="a running Ray cluster (e.g. auto, or HOST:6379)")
    add_service_options(up)
    up.add_argument("--shards", type=int, default=None, help="stream shards (cluster.shards)")
    up.add_argument(
        "--duration", type=float, default=None, help="--local: stop after this many seconds"
    )
    up.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for the cluster to be up"
    )
    up.set_defaults(handler=cmd_up)
    down = actions.add_parser("down", help="stop what `cluster up --address` started")
    down.add_argument("--address", required=True, help="the Ray cluster")
    down.add_argument("--config", type=Path, default=None, help="YAML configuration file")
    down.set_defaults(handler=cmd_down)


def _config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Any:
    overrides: dict[str, Any] = dict(extra or {})
    if getattr(args, "shards", None) is not None:
        overrides["cluster.shards"] = args.shards
    return build_config(args, overrides)


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def start_redis(
    folder: Path, port: int | None = None, persist: bool = True
) -> tuple[subprocess.Popen[bytes], str]:
    """A ``redis-server`` on ``port`` (a free one by default) of the loopback interface,
    with its files in ``folder`` (an append-only log when ``persist``); its URL once it
    answers."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ValueError(
            "no Redis answers at cluster.redis_url and redis-server is not installed "
            "(Debian: apt install redis-server), or set cluster.redis_url"
        )
    if port is None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    command += ["--save", "", "--appendonly", "yes" if persist else "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_answers(url, 0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise ValueError(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    return process, url


def add_streams(config: Any, entries: list[dict[str, str]]) -> None:
    """Record the streams given at start (one already there by name is left as it is)."""
    from fakewatch.cluster.state import ClusterState, connect
    from fakewatch.stream.analysis.registry import StreamNameError

    async def add() -> None:
        client = connect(config.cluster)
        state = ClusterState(client, config.cluster)
        try:
            for entry in entries:
                with contextlib.suppress(StreamNameError):  # there from an earlier start
                    await state.add(entry["name"], entry["url"], config.limits.max_streams)
        finally:
            await client.aclose()

    asyncio.run(add())


def cmd_up(args: argparse.Namespace) -> int:
    import ray

    from fakewatch.cluster import launch
    from fakewatch.cluster.front import FRONT_RESOURCE, SHARD_RESOURCE
    from fakewatch.stream.logs import configure_logging

    config = _config(args)
    configure_logging(config.logging.level, config.logging.json_lines)
    redis_process = None
    if args.local and not redis_answers(config.cluster.redis_url):
        folder = Path(tempfile.mkdtemp(prefix="fakewatch-redis-"))
        redis_process, url = start_redis(folder)
        config = _config(args, {"cluster.redis_url": url})
        print(f"started redis-server at {url} (data in {folder})", flush=True)
    elif not redis_answers(config.cluster.redis_url):
        raise ValueError("no Redis answers at cluster.redis_url")
    entries = [{"name": s.name, "url": s.url} for s in config.streams]
    try:
        if args.local:
            shards = config.cluster.shards
            ray.init(
                namespace=config.cluster.namespace,
                include_dashboard=False,
                resources={SHARD_RESOURCE: shards, FRONT_RESOURCE: 1},
                num_cpus=os.cpu_count(),
                log_to_driver=True,
            )
        else:
            ray.init(address=args.address, namespace=config.cluster.namespace)
        started = time.monotonic()
        _, url = launch.start(config, timeout_s=args.timeout)
        add_streams(config, entries)
        print(
            f"\nfakewatch cluster is up in {time.monotonic() - started:.1f} s: "
            f"{config.cluster.shards} shards, the segmenter and the API\n"
            f"  streams:  {url}/api/streams\n"
            f"  shards:   {url}/api/shards\n"
            f"  metrics:  {url}/metrics (front), {url}/cluster/targets (shards, segmenter)\n",
            flush=True,
        )
        if not args.local:
            return 0
        _wait(args.duration)
        print("stopping the cluster ...", flush=True)
        launch.stop(config)
        return 0
    finally:
        if args.local and ray.is_initialized():
            from ray import serve

            with contextlib.suppress(Exception):
                serve.shutdown()  # type: ignore[no-untyped-call]
            ray.shutdown()
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(10)


def _wait(duration_s: float | None) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait(duration_s)


def cmd_down(args: argparse.Namespace) -> int:
    import ray

    from fakewatch.cluster import launch

    config = _config(args)
    ray.init(address=args.address, namespace=config.cluster.namespace)
    launch.stop(config)
    ray.shutdown()
    return 0
