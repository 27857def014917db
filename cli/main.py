"""``fakewatch``: the command line entry point.

Each sub-command imports what it needs when it runs, so ``fakewatch --help`` is fast and
the service never imports training code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fakewatch.cli import (
    api_commands,
    cluster_command,
    demo_command,
    engine_commands,
    scan_command,
    serve_command,
    training_commands,
)
from fakewatch.engines.defaults import installed_version


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fakewatch",
        description="Real-time deepfake detection for live video.",
    )
    parser.add_argument("--version", action="version", version=f"fakewatch {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    engine_commands.register(commands)
    scan_command.register(commands)
    serve_command.register(commands)
    training_commands.register(commands)
    demo_command.register(commands)
    cluster_command.register(commands)
    api_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    from fakewatch.engines.bundle import BundleError
    from fakewatch.engines.media import MediaError
    from fakewatch.engines.runtimes.base import BackendUnavailable, EngineInputError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except (BundleError, BackendUnavailable, EngineInputError, MediaError, ValueError) as error:
        print(f"fakewatch: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status


def existing_path(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return path


if __name__ == "__main__":
    sys.exit(main())
