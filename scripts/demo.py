"""The README's main job: what fakewatch can show on this machine today.

Until the default model ships, this writes an untrained engine bundle and benchmarks
every installed runtime against torch eager, side by side.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fakewatch.cli.main import main

CACHE = Path(__file__).resolve().parent.parent / ".cache"


def run() -> int:
    bundle = CACHE / "untrained-mobilenet_v2"
    if not (bundle / "manifest.json").is_file():
        status = main(["engine", "init", str(bundle)])
        if status:
            return status
    return main(["engine", "bench", str(bundle), "--batch", "1,8", "--seconds", "2"])


if __name__ == "__main__":
    sys.exit(run())
