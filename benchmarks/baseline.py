"""An earlier commit of fakewatch, checked out and installed beside this one, so that a
benchmark can measure it on the same machine in the same session.

The checkout is a ``git worktree`` under ``.cache/baseline/<commit>``, with a virtual
environment that reuses this environment's packages (a ``.pth`` line to its
site-packages) and installs the checkout itself editable on top. Both are made once and
reused. The earlier commit runs its own benchmark script, as it was then.
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "baseline"


def run(command: list[str], cwd: Path | None = None) -> str:
    """Run ``command``; its standard output, or :class:`RuntimeError` with its errors."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def checkout(ref: str, cache: Path = CACHE) -> Path:
    """The checkout of ``ref`` with its own ``.venv``; made once, then reused."""
    commit = run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], ROOT).strip()
    folder = cache / commit[:12]
    venv = folder / ".venv"
    if (venv / "installed").is_file():
        return folder
    if not (folder / ".git").exists():
        cache.mkdir(parents=True, exist_ok=True)
        run(["git", "worktree", "add", "--detach", "--force", str(folder), commit], ROOT)
    run([sys.executable, "-m", "venv", "--clear", str(venv)])
    site = Path(sysconfig.get_paths(vars={"base": str(venv)})["purelib"])
    here = Path(sysconfig.get_paths()["purelib"])
    (site / "00-packages-of-the-current-checkout.pth").write_text(f"{here}\n")
    run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "-e", "."], folder
    )
    (venv / "installed").write_text(f"{commit}\n")
    return folder


def baseline_capacity(ref: str, arguments: list[str], cache: Path = CACHE) -> tuple[int, str]:
    """The sustained streams of ``ref``'s own ``benchmarks/capacity.py`` (fakewatch only),
    run with ``arguments``; and its printed report."""
    folder = checkout(ref, cache)
    command = [
        str(folder / ".venv" / "bin" / "python"),
        "benchmarks/capacity.py",
        "--skip-naive",
        "--soak-minutes",
        "0",
        *arguments,
    ]
    print(f"baseline {ref} ({folder.name}): {' '.join(command[1:])}", flush=True)
    output = run(command, folder)
    found = re.search(r"capacity: fakewatch (\d+) streams", output)
    if found is None:
        raise RuntimeError(f"the baseline's capacity.py printed no capacity:\n{output[-2000:]}")
    return int(found.group(1)), output
