"""Run mypy on the source folders under the package names they install as.

The folders ``engines/``, ``training/``, ``stream/``, ``cluster/`` and ``cli/`` install as
``fakewatch.engines`` and so on. mypy cannot follow setuptools' editable-install import
hook, so this links the folders into a temporary ``fakewatch/`` tree and checks that.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cli", "engines", "training", "stream", "cluster")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="fakewatch-mypy-") as tmp:
        tree = Path(tmp) / "fakewatch"
        tree.mkdir()
        for name in PACKAGES:
            (tree / name).symlink_to(ROOT / name, target_is_directory=True)
        command = [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--namespace-packages",
            "--explicit-package-bases",
            "-p",
            "fakewatch",
        ]
        return subprocess.call(command, cwd=tmp, env={**os.environ, "MYPYPATH": tmp})


if __name__ == "__main__":
    sys.exit(main())
