import shutil
from pathlib import Path

import pytest

from fakewatch.cli.main import main


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("fakewatch ")


def test_engine_info_verifies_and_summarises(
    untrained_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["engine", "info", str(untrained_bundle_dir)]) == 0
    out = capsys.readouterr().out
    assert "all 2 files verified" in out
    assert "Unet/mobilenet_v2 224px" in out


def test_a_tampered_bundle_is_refused_with_exit_2(
    untrained_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(untrained_bundle_dir, bundle)
    onnx = bundle / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[1000] ^= 0xFF
    onnx.write_bytes(bytes(data))
    assert main(["engine", "bench", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fakewatch: error: model.onnx in")
    assert "was changed after the bundle was built" in err


def test_engine_bench_prints_ratios_against_torch(
    untrained_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["engine", "bench", str(untrained_bundle_dir), "--batch", "1,2", "--seconds", "0.2"])
        == 0
    )
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| engine | batch | crops/s | p50 ms | p99 ms | x crops/s vs torch")
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]) for line in table[1:]}
    for label in ("torch/cpu/f32", "onnxruntime/cpu/f32", "openvino/cpu/f32"):
        assert (label, "1") in rows and (label, "2") in rows
    torch_row = next(line for line in table if line.startswith("| torch/cpu/f32 | 1 "))
    assert torch_row.split("|")[6].strip() == "1.00"
    assert "skipped openvino/cpu/bf16: openvino/bf16: bundle" in out


def test_engine_init_writes_a_loadable_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "small"
    assert (
        main(["engine", "init", str(target), "--size", "64", "--decoder-channels", "32,16,16,8,8"])
        == 0
    )
    assert main(["engine", "info", str(target)]) == 0
    assert "Unet/mobilenet_v2 64px decoder [32, 16, 16, 8, 8]" in capsys.readouterr().out


def test_bad_arguments_are_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["engine", "info", str(tmp_path)]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err
    assert main(["engine", "init", str(tmp_path / "x"), "--size", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["engine", "bench", "--batch", "0"])
