"""Model files: a bundle that is tampered with, incomplete or points outside its folder
is refused by every way in (the loader, ``fakewatch serve``/``scan``/``engine info``, and
the service's start), and nothing in the package can unpickle.

The per-file checks of :mod:`tests.engines.test_bundle` are the loader's unit tests;
here every hostile bundle goes through every entry point. The source scan builds on
:mod:`tests.test_layering` (its file list) and widens its pickle check: more modules, aliased
``torch.load``, ``numpy.load(allow_pickle=True)``, and a self-test that it catches each.
"""

from __future__ import annotations

import ast
import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from fakewatch.cli.main import main
from fakewatch.engines.bundle import MANIFEST_NAME, BundleError, EngineBundle
from fakewatch.engines.defaults import default_bundle_path
from fakewatch.stream.config import load_config
from fakewatch.stream.host import open_service
from tests.engines.test_bundle import _edit_manifest
from tests.reliability.test_secrets import restored_logging
from tests.support.service import serving
from tests.test_layering import _sources

Tamper = Callable[[Path, Path], str]
"""Spoils the bundle copy (its folder, a scratch folder); returns what the error names."""


def _flip(name: str) -> Tamper:
    def tamper(bundle: Path, _: Path) -> str:
        path = bundle / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        return name

    return tamper


def _append(name: str) -> Tamper:
    def tamper(bundle: Path, _: Path) -> str:
        with (bundle / name).open("ab") as handle:
            handle.write(b"\0")
        return name

    return tamper


def _remove(name: str) -> Tamper:
    def tamper(bundle: Path, _: Path) -> str:
        (bundle / name).unlink()
        return name

    return tamper


def _point(role: str, path: str) -> Tamper:
    def tamper(bundle: Path, _: Path) -> str:
        manifest = json.loads((bundle / MANIFEST_NAME).read_text())
        manifest["artifacts"][role]["path"] = path
        (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
        return "must be relative and inside the bundle"

    return tamper


def _symlink_out(bundle: Path, scratch: Path) -> str:
    outside = scratch / "elsewhere.onnx"
    shutil.move(bundle / "model.onnx", outside)
    (bundle / "model.onnx").symlink_to(outside)
    return "resolves outside"


def _symlinked_folder(bundle: Path, scratch: Path) -> str:
    """A folder inside the bundle that is a link to one outside it."""
    (scratch / "models").mkdir()
    shutil.move(bundle / "model.onnx", scratch / "models" / "model.onnx")
    (bundle / "models").symlink_to(scratch / "models")
    _point("onnx", "models/model.onnx")(bundle, scratch)
    return "resolves outside"


def _rehash_to_other_file(bundle: Path, _: Path) -> str:
    """The onnx entry claims the weights' hash and size: the files do not match it."""
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest["artifacts"]["onnx"]["sha256"] = manifest["artifacts"]["weights"]["sha256"]
    manifest["artifacts"]["onnx"]["bytes"] = manifest["artifacts"]["weights"]["bytes"]
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    return "model.onnx"


def _unknown_key(bundle: Path, _: Path) -> str:
    _edit_manifest(bundle, {"loader": "pickle"})
    return "not a valid manifest"


def _not_json(bundle: Path, _: Path) -> str:
    (bundle / MANIFEST_NAME).write_bytes(b"\x80\x04\x95 not json")
    return "not a valid manifest"


def _huge_manifest(bundle: Path, _: Path) -> str:
    _edit_manifest(bundle, {"name": "x" * 2_000_000})
    return "at most 1 MB"


def _no_weights_role(bundle: Path, _: Path) -> str:
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    del manifest["artifacts"]["weights"]
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    return "lists no 'weights' artefact"


CASES: dict[str, Tamper] = {
    "a changed byte in weights.safetensors": _flip("weights.safetensors"),
    "a changed byte in model.onnx": _flip("model.onnx"),
    "a byte appended to model.onnx": _append("model.onnx"),
    "the onnx hash swapped for another file's": _rehash_to_other_file,
    "weights.safetensors missing": _remove("weights.safetensors"),
    "model.onnx missing": _remove("model.onnx"),
    "manifest.json missing": _remove(MANIFEST_NAME),
    "manifest path ../model.onnx": _point("onnx", "../model.onnx"),
    "manifest path /etc/passwd": _point("onnx", "/etc/passwd"),
    "manifest path sub/../../x": _point("weights", "sub/../../weights.safetensors"),
    "manifest path ..\\model.onnx": _point("onnx", "..\\model.onnx"),
    "manifest path empty": _point("onnx", ""),
    "a file that is a link out of the folder": _symlink_out,
    "a folder that is a link out of the folder": _symlinked_folder,
    "an unknown manifest key": _unknown_key,
    "a manifest that is not JSON": _not_json,
    "a manifest over 1 MB": _huge_manifest,
    "no weights entry": _no_weights_role,
}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("scan") / "face.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    return path


@pytest.mark.reliability
def test_a_spoiled_bundle_is_refused_by_every_way_in(
    tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused: dict[str, int] = {}
    for index, (case, tamper) in enumerate(CASES.items()):
        bundle, scratch = tmp_path / f"b{index}", tmp_path / f"s{index}"
        shutil.copytree(default_bundle_path(), bundle)
        scratch.mkdir()
        named = tamper(bundle, scratch)
        ways = 0

        with pytest.raises(BundleError) as caught:
            EngineBundle.load(bundle)
        assert named in str(caught.value), (case, str(caught.value))
        ways += 1

        for argv in (
            ["engine", "info", str(bundle)],
            ["scan", str(image), "--engine", str(bundle), "--quiet"],
            ["serve", "--engine", str(bundle), "--port", "0", "--duration", "1"],
        ):
            with restored_logging():
                status = main(argv)
            err = capsys.readouterr().err
            assert status == 2, (case, argv, err)
            assert err.startswith("fakewatch: error: ") and named in err, (case, argv, err)
            ways += 1

        config = load_config(environ={}, overrides={"engine.bundle": str(bundle)})
        with pytest.raises(BundleError):
            open_service(config)
        ways += 1
        refused[case] = ways

    async def through_the_harness() -> None:  # the hosted service as tests run it
        with pytest.raises(BundleError, match="has sha256"):
            async with serving(tmp_path / "state", **{"engine.bundle": str(tmp_path / "b0")}):
                pass

    asyncio.run(through_the_harness())
    with capsys.disabled():
        print(
            f"\nmodel files: {len(refused)} spoiled bundles, each refused {min(refused.values())} "
            "ways (EngineBundle.load, engine info, scan, serve: exit 2, the service's start); "
            f"cases: {'; '.join(refused)}"
        )


# What unpickles. Imports of these modules are refused outright.
PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "cloudpickle", "shelve"}
PICKLING_MODULES |= {"marshal", "pandas.io.pickle", "torch.serialization"}
# Calls that unpickle (or may): qualified name -> the keyword that makes them safe, if any.
PICKLING_CALLS: dict[str, tuple[str, str] | None] = {
    "torch.load": ("weights_only", "True"),
    "torch.serialization.load": ("weights_only", "True"),
    "numpy.load": ("allow_pickle", "False"),
    "pandas.read_pickle": None,
    "torch.jit.load": None,
    "torch.export.load": None,
    "torch.package.PackageImporter": None,
}
# Known calls that can unpickle, kept on purpose, with why. Reported by the test.
# (None now: TensorRT engines are stored as TensorRT's own serialised plan.)
ACCEPTED: dict[tuple[str, str], str] = {}


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local names bound by imports -> the qualified names they stand for."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _qualified(node: ast.expr, aliases: dict[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    base = aliases.get(node.id, node.id)
    base = {"np": "numpy", "pd": "pandas"}.get(base, base)
    return ".".join([base, *reversed(parts)])


def unpickling(source: str, filename: str = "<source>") -> list[tuple[str, str]]:
    """``(what, line)`` for every import or call in ``source`` that can unpickle."""
    tree = ast.parse(source, filename=filename)
    found: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for module in modules:
            if module in PICKLING_MODULES or module.split(".")[0] in PICKLING_MODULES:
                found.append((module, ast.unparse(node)))
    aliases = _aliases(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _qualified(node.func, aliases)
        if name not in PICKLING_CALLS:
            continue
        safe = PICKLING_CALLS[name]
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if safe is not None and keywords.get(safe[0]) == safe[1]:
            continue
        if name == "numpy.load" and "allow_pickle" not in keywords:
            continue  # numpy's default is allow_pickle=False
        found.append((name, ast.unparse(node)))
    return found


def test_the_scan_catches_every_way_to_unpickle() -> None:
    caught = {
        "import pickle": "pickle",
        "import cPickle": "cPickle",
        "from _pickle import loads": "_pickle",
        "import dill as d": "dill",
        "from joblib import load": "joblib",
        "import shelve": "shelve",
        "import torch\ntorch.load(f)": "torch.load",
        "import torch\ntorch.load(f, weights_only=False)": "torch.load",
        "import torch as t\nt.load(f)": "torch.load",
        "from torch import load\nload(f)": "torch.load",
        "from torch import load as l\nl(f, map_location='cpu')": "torch.load",
        "import torch\ntorch.serialization.load(f)": "torch.serialization.load",
        "import numpy as np\nnp.load(f, allow_pickle=True)": "numpy.load",
        "import pandas as pd\npd.read_pickle(f)": "pandas.read_pickle",
        "import torch\ntorch.jit.load(f)": "torch.jit.load",
        "import torch\ntorch.export.load(f)": "torch.export.load",
    }
    for source, what in caught.items():
        assert [w for w, _ in unpickling(source)][:1] == [what], source
    for safe in (
        "import torch\ntorch.load(f, weights_only=True)",
        "import numpy as np\nnp.load(f)",
        "import numpy as np\nnp.load(f, allow_pickle=False)",
        "import json\njson.load(f)",
        "from safetensors.torch import load_file\nload_file(f)",
    ):
        assert unpickling(safe) == [], safe


@pytest.mark.reliability
def test_nothing_in_the_package_can_unpickle() -> None:
    repo = Path(__file__).resolve().parents[2]
    scanned, accepted = 0, []
    for folder in ("cli", "engines", "training", "stream"):
        for path in _sources(folder):
            relative = path.relative_to(repo).as_posix()
            for what, line in unpickling(path.read_text(), str(path)):
                reason = ACCEPTED.get((relative, what))
                assert reason, f"{relative} can unpickle: {line}"
                accepted.append(f"{relative}: {line} ({reason})")
            scanned += 1
    assert scanned > 50
    print(
        f"\nunpickling scan: {scanned} source files of cli, engines, training, stream; "
        f"{len(PICKLING_MODULES)} modules and {len(PICKLING_CALLS)} calls looked for; "
        f"accepted exceptions: {len(accepted)}"
    )
    for line in accepted:
        print(f"  {line}")
