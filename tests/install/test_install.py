"""Both a wheel install and an editable install expose only the ``fakewatch`` namespace.

Each install goes into a fresh virtual environment that borrows the test environment's
third-party packages through a ``.pth`` file, so nothing is downloaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = ("engines", "training", "stream", "cluster", "cli")
IMPORT_CHECK = """
import json, fakewatch.engines, fakewatch.training, fakewatch.stream, fakewatch.cli.main
import fakewatch.engines.runtimes, fakewatch.engines.bundle, fakewatch.cluster.config
import fakewatch.stream.host, fakewatch.stream.http.pages as pages
assert (pages.WEB / "index.html").is_file(), pages.WEB
print(json.dumps({m: __import__(m, fromlist=['x']).__file__ for m in
      ['fakewatch.engines', 'fakewatch.training', 'fakewatch.stream', 'fakewatch.cluster',
       'fakewatch.cli']}))
"""


def _site_packages(python: Path) -> Path:
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return Path(site)


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    # third-party packages come from the test environment, after the venv's own
    borrowed = _site_packages(python) / "borrowed.pth"
    borrowed.write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _pip(python: Path, *args: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            *args,
        ],
        check=True,
        env={**os.environ, "PIP_CONSTRAINT": ""},
        cwd=REPO,
    )


def _imported_from(python: Path, cwd: Path) -> dict[str, str]:
    import json

    result = subprocess.run(
        [str(python), "-I", "-c", IMPORT_CHECK], check=True, capture_output=True, text=True, cwd=cwd
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _top_level(python: Path) -> set[str]:
    return {p.name for p in _site_packages(python).iterdir()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        env={**os.environ, "PIP_CONSTRAINT": ""},
    )
    (found,) = out.glob("fakewatch-*.whl")
    return found


def test_wheel_holds_only_the_fakewatch_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops <= {
        "fakewatch",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }
    for folder in SOURCE_FOLDERS:
        assert any(n.startswith(f"fakewatch/{folder}/") for n in names), folder
    assert "fakewatch/engines/runtimes/openvino_engine.py" in names
    for stage in ("sources", "analysis", "sinks", "http"):
        assert f"fakewatch/stream/{stage}/__init__.py" in names, stage
    assert "fakewatch/stream/http/web/index.html" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "fakewatch = fakewatch.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    )


@pytest.mark.slow
def test_wheel_install_imports_from_site_packages(wheel: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    _pip(python, str(wheel))
    files = _imported_from(python, tmp_path)
    for module, file in files.items():
        assert "site-packages/fakewatch/" in file, (module, file)
    assert not _top_level(python) & set(SOURCE_FOLDERS)
    version = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "fakewatch"), "--version"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert version.stdout.startswith("fakewatch ")


@pytest.mark.slow
def test_editable_install_imports_from_the_source_folders(tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    _pip(python, "--editable", str(REPO))
    files = _imported_from(python, tmp_path)
    for module, file in files.items():
        folder = module.split(".")[1]
        assert Path(file) == REPO / folder / "__init__.py", (module, file)
    assert not _top_level(python) & set(SOURCE_FOLDERS)
