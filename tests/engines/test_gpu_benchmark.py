"""``benchmarks/gpu.py`` run as a program, as on the GPU machine: its CPU run writes the
report and prints the ratios last, and ``--prepare`` builds the wheel it carries there.

The script is never imported: it runs in a child process with tiny settings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.benchmarks import run_benchmark
from tests.support.peers import REPO

SCRIPT = REPO / "benchmarks" / "gpu.py"


@pytest.mark.slow
def test_cpu_run_writes_rows_and_prints_the_ratios_last(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = run_benchmark("gpu", "--device", "cpu", "--quick", "--out", str(out), cwd=tmp_path)
    report = json.loads((out / "gpu-bench.json").read_text())
    assert report["complete"] and report["flops_per_crop"] > 1e9
    assert set(report["ceiling_flops"]) == {"fp32", "bf16"}
    assert list(report["engines"]) == ["torch/cpu/f32", "torch/cpu/bf16"]
    # the shipped bundle fails its CPU parity checks: auto opens f32 and says why
    assert report["precision_auto"].startswith("openvino/cpu/f32: ")
    assert "bf16 failed its parity check" in report["precision_auto"]
    rows = {(r["label"], r["batch"]): r for r in report["rows"]}
    assert sorted(rows) == [(e, b) for e in ("torch/cpu/bf16", "torch/cpu/f32") for b in (1, 2)]
    for row in rows.values():
        assert row["crops_per_s"] > 0 and row["p50_ms"] <= row["p99_ms"] and row["calls"] >= 4
        assert row["vs_baseline"] > 0 and 0 < row["peak_fraction"] < 2
    assert all(rows["torch/cpu/f32", b]["vs_baseline"] == 1.0 for b in (1, 2))
    # bf16 is measured against f32 on the same crops, and differs from it a little
    assert report["max_abs_diff"]["torch/cpu/f32"] == 0
    assert 0 < report["max_abs_diff"]["torch/cpu/bf16"] < 0.5
    assert (out / "gpu-bench.md").read_text().count("| torch/cpu/f32 |") == 3  # 2 rows, ratios
    lines = done.stdout.strip().splitlines()
    assert lines[-4] == "| x crops/s vs torch f32 / % of ceiling | batch 1 | batch 2 |"
    assert [line.split(" |")[0] for line in lines[-2:]] == ["| torch/cpu/f32", "| torch/cpu/bf16"]


def test_a_run_without_cuda_says_how_to_run_on_cpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "--device cpu --quick" in done.stdout


@pytest.mark.slow
def test_prepare_builds_the_wheel_with_the_shipped_bundle(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    run_benchmark("gpu", "--prepare", "--only-fakewatch", "--wheels", str(wheels), cwd=tmp_path)
    (wheel,) = wheels.glob("fakewatch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for member in ("bench.py", "runtimes/torch_engine.py", "default_bundle/manifest.json"):
        assert f"fakewatch/engines/{member}" in names
    assert "fakewatch/engines/default_bundle/weights.safetensors" in names
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)
