"""``fakewatch streams``, ``events`` and ``review``: a running service's API from the
command line (``--url``, ``--token`` or ``FAKEWATCH_TOKEN``); ``export-reviews``: the
reviewed alerts of a service's evidence folder as training data."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

DEFAULT_URL = "http://127.0.0.1:8080"


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("FAKEWATCH_URL", DEFAULT_URL),
        help=f"the service (default: FAKEWATCH_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="the service's server.token (default: the environment variable FAKEWATCH_TOKEN)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON, one object a line")


def register(commands: Any) -> None:
    streams = commands.add_parser("streams", help="list, add, remove or change a service's streams")
    verbs = streams.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="the streams and their state")
    _connection(listing)
    listing.set_defaults(handler=cmd_streams_list)
    add = verbs.add_parser("add", help="watch a stream URL")
    _connection(add)
    add.add_argument("url", help="rtsp://, rtmp://, http(s):// or a file the service may read")
    add.add_argument("--name", default=None, help="a unique name (default: made up)")
    add.set_defaults(handler=cmd_streams_add)
    remove = verbs.add_parser("rm", help="stop watching a stream")
    _connection(remove)
    remove.add_argument("stream", help="id or name")
    remove.set_defaults(handler=cmd_streams_rm)
    change = verbs.add_parser("set", help="change a stream's settings (KEY=VALUE, YAML values)")
    _connection(change)
    change.add_argument("stream", help="id or name")
    change.add_argument("settings", nargs="+", metavar="KEY=VALUE")
    change.set_defaults(handler=cmd_streams_set)

    events = commands.add_parser("events", help="a service's recent events")
    _connection(events)
    events.add_argument("--stream", default=None, help="only this stream's (id or name)")
    events.add_argument("--limit", type=int, default=20, help="at most this many (1..1000)")
    events.add_argument(
        "--follow", action="store_true", help="keep printing new events as they come"
    )
    events.add_argument(
        "--every", type=float, default=1.0, help="with --follow: seconds between polls"
    )
    events.add_argument(
        "--count", type=int, default=None, help="with --follow: stop after this many events"
    )
    events.set_defaults(handler=cmd_events)

    review = commands.add_parser("review", help="give a person's verdict on an alert")
    _connection(review)
    review.add_argument("event", help="the alert's event id")
    review.add_argument("verdict", choices=["confirmed", "false_positive"])
    review.add_argument("--note", default="", help="why, for the record")
    review.set_defaults(handler=cmd_review)

    export = commands.add_parser(
        "export-reviews", help="reviewed alerts as training data (a recipe's reviews.folders)"
    )
    export.add_argument("out", type=Path, metavar="DIR", help="where to write them")
    export.add_argument(
        "--evidence",
        type=Path,
        default=None,
        help="the evidence folder (default: evidence.folder of --config)",
    )
    export.add_argument("--config", type=Path, default=None, help="the service's YAML config")
    export.set_defaults(handler=cmd_export_reviews)


def _client(args: argparse.Namespace) -> Any:
    from fakewatch.stream.http.client import Client

    return Client(args.url, args.token or os.environ.get("FAKEWATCH_TOKEN") or None)


def _failed(error: Exception) -> int:
    print(f"fakewatch: error: {error}", file=sys.stderr)
    return 1


def cmd_streams_list(args: argparse.Namespace) -> int:
    from fakewatch.stream.http.client import ApiError

    try:
        streams = _client(args).streams()
    except ApiError as error:
        return _failed(error)
    for stream in streams:
        if args.json:
            print(stream.model_dump_json(exclude_unset=True))
            continue
        score = "-" if stream.score is None else f"{stream.score:.3f}"
        alert = " ALERT" if stream.alerting else ""
        line = f"{stream.id}  {stream.name:<20} {stream.status:<10} score {score}{alert}"
        print(f"{line}  {stream.source}")
    return 0


def cmd_streams_add(args: argparse.Namespace) -> int:
    from fakewatch.stream.http.client import ApiError

    try:
        added = _client(args).add_stream(args.url, args.name)
    except ApiError as error:
        return _failed(error)
    print(added.model_dump_json(exclude_unset=True) if args.json else f"{added.id}  {added.name}")
    return 0


def cmd_streams_rm(args: argparse.Namespace) -> int:
    from fakewatch.stream.http.client import ApiError

    try:
        _client(args).remove_stream(args.stream)
    except ApiError as error:
        return _failed(error)
    return 0


def settings_of(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a JSON object, each value read as YAML (``0.8``, ``true``)."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{pair!r} is not KEY=VALUE")
        try:
            settings[key] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"{pair!r}: the value is not YAML: {error}") from error
    return settings


def cmd_streams_set(args: argparse.Namespace) -> int:
    from fakewatch.stream.http.client import ApiError

    settings = settings_of(args.settings)
    try:
        changed = _client(args).update_stream(args.stream, settings)
    except ApiError as error:
        return _failed(error)
    print(json.dumps(changed.settings.model_dump() if changed.settings else {}))
    return 0


def _print_event(event: Any, as_json: bool) -> None:
    if as_json:
        print(event.model_dump_json(exclude_unset=True), flush=True)
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.time))
    score = f" score {event.window.score:.3f}" if event.window else ""
    review = f" [{event.review.verdict}]" if event.review else ""
    print(f"{when}  {event.id}  {event.stream.name:<16} {event.type}{score}{review}", flush=True)


def cmd_events(args: argparse.Namespace) -> int:
    from fakewatch.stream.http.client import ApiError

    client = _client(args)
    try:
        events = client.events(args.limit, args.stream)
        for event in reversed(events):  # oldest first, as a log reads
            _print_event(event, args.json)
        printed = len(events)
        last = events[0].id if events else None
        while args.follow and (args.count is None or printed < args.count):
            time.sleep(args.every)
            newer = client.events(1000, args.stream, after=last)
            for event in reversed(newer):
                _print_event(event, args.json)
                printed += 1
            if newer:
                last = newer[0].id
    except ApiError as error:
        return _failed(error)
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from fakewatch.stream.http.client import ApiError

    try:
        event = _client(args).review(args.event, args.verdict, args.note)
    except ApiError as error:
        return _failed(error)
    _print_event(event, args.json)
    return 0


def cmd_export_reviews(args: argparse.Namespace) -> int:
    from fakewatch.training.reviews import export_reviews

    evidence = args.evidence
    if evidence is None:
        from fakewatch.stream.config import load_config

        evidence = load_config(args.config).evidence.folder
    counts = export_reviews(evidence, args.out)
    print(
        f"{counts['false_positive']} false positives (reals) and {counts['confirmed']} "
        f"confirmed alerts (fakes) in {args.out}"
    )
    return 0
