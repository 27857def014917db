"""``fakewatch serve``: watch live streams and raise alerts, behind an HTTP API."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any


def add_service_options(parser: argparse.ArgumentParser) -> None:
    """The options ``serve`` and ``cluster up`` share; :func:`build_config` reads them."""
    parser.add_argument("--config", type=Path, default=None, help="YAML configuration file")
    parser.add_argument(
        "--engine", type=Path, default=None, help="bundle folder (default: the shipped one)"
    )
    parser.add_argument("--host", default=None, help="listen address (overrides the config)")
    parser.add_argument("--port", type=int, default=None, help="listen port (overrides the config)")
    parser.add_argument(
        "--stream",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="watch this stream from the start (repeatable)",
    )
    parser.add_argument("--json-logs", action="store_true", help="one JSON object per log line")


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the streaming service")
    add_service_options(serve)
    serve.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    serve.add_argument(
        "--print-config",
        action="store_true",
        help="print the resulting configuration as commented YAML and exit",
    )
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from fakewatch.stream.host import open_service, serve
    from fakewatch.stream.logs import configure_logging

    config = build_config(args)
    if args.print_config:
        from fakewatch.stream.config import describe_config

        print(describe_config(config), end="")
        return 0
    configure_logging(config.logging.level, config.logging.json_lines)
    asyncio.run(serve(open_service(config), args.duration))
    return 0


def build_config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Any:
    """The service configuration for ``args``: file, environment, then options. ``serve``
    and ``cluster up`` read the same format: the service's sections and ``cluster:``
    (which ``serve`` ignores)."""
    from fakewatch.cluster.config import load_cluster_config

    overrides: dict[str, Any] = dict(extra or {})
    if getattr(args, "engine", None):
        overrides["engine.bundle"] = str(args.engine)
    if getattr(args, "host", None):
        overrides["server.host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["server.port"] = args.port
    if getattr(args, "json_logs", False):
        overrides["logging.json"] = True
    streams = []
    for item in getattr(args, "stream", []):
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ValueError(f"--stream takes NAME=URL, got {item!r}")
        streams.append({"name": name, "url": url})
    if streams:
        overrides["streams"] = streams
    return load_cluster_config(getattr(args, "config", None), overrides=overrides)
