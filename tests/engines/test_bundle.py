import json
import shutil
from pathlib import Path

import pytest

from fakewatch.engines.bundle import MANIFEST_NAME, BundleError, EngineBundle


@pytest.fixture
def bundle_copy(untrained_bundle_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(untrained_bundle_dir, target)
    return target


def _edit_manifest(folder: Path, change: dict[str, object]) -> None:
    path = folder / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest.update(change)
    path.write_text(json.dumps(manifest))


def test_a_good_bundle_loads_with_its_hashes(bundle_copy: Path) -> None:
    bundle = EngineBundle.load(bundle_copy)
    assert set(bundle.manifest.artifacts) == {"weights", "onnx"}
    assert len(bundle.model_sha256) == 64
    assert bundle.path("onnx").is_file()


@pytest.mark.parametrize("name", ["weights.safetensors", "model.onnx"])
def test_one_changed_byte_is_refused(bundle_copy: Path, name: str) -> None:
    path = bundle_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"{name} .* has sha256 .* but the manifest says"):
        EngineBundle.load(bundle_copy)


def test_a_truncated_file_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / "model.onnx"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(BundleError, match="bytes but the manifest says"):
        EngineBundle.load(bundle_copy)


def test_a_missing_file_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "weights.safetensors").unlink()
    with pytest.raises(
        BundleError, match=r"incomplete: weights.safetensors \(weights\) is missing"
    ):
        EngineBundle.load(bundle_copy)


@pytest.mark.parametrize("path", ["../outside.onnx", "/etc/passwd", "sub/../../x"])
def test_a_path_outside_the_folder_is_refused(bundle_copy: Path, path: str) -> None:
    manifest = json.loads((bundle_copy / MANIFEST_NAME).read_text())
    manifest["artifacts"]["onnx"]["path"] = path
    (bundle_copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="must be relative and inside the bundle"):
        EngineBundle.load(bundle_copy)


def test_a_symlink_out_of_the_folder_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(bundle_copy / "model.onnx", outside)
    (bundle_copy / "model.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="resolves outside"):
        EngineBundle.load(bundle_copy)


def test_unknown_manifest_keys_and_missing_manifest_are_refused(bundle_copy: Path) -> None:
    _edit_manifest(bundle_copy, {"run_this": "import os"})
    with pytest.raises(BundleError, match="not a valid manifest"):
        EngineBundle.load(bundle_copy)
    (bundle_copy / MANIFEST_NAME).unlink()
    with pytest.raises(BundleError, match=r"manifest\.json is missing"):
        EngineBundle.load(bundle_copy)


def test_a_missing_artefact_role_says_how_to_build_it(bundle_copy: Path) -> None:
    bundle = EngineBundle.load(bundle_copy)
    with pytest.raises(BundleError, match="fakewatch engine build"):
        bundle.path("onnx_int8")
