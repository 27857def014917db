"""benchmarks/gpu.py: its CPU smoke run, and the two stand-ins it brings for a GPU machine
without fakewatch's dependencies (the plain-torch network and the safetensors reader)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.support.scripts import benchmark_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu.py"
BUNDLE = REPO / "engines" / "default_bundle"


@pytest.fixture(scope="module")
def gpu_bench() -> ModuleType:
    return benchmark_script("gpu")


def test_cpu_quick_run_writes_rows_ratios_and_reasons(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "gpu-bench.json").read_text())
    assert report["complete"]
    assert report["flops_per_crop"] > 1e9
    assert report["gemm_ceiling_flops"]["fp32"] > 0
    baseline = {r["batch"]: r for r in report["rows"] if r["variant"] == "eager fp32"}
    assert sorted(baseline) == [1, 2]
    for row in report["rows"]:
        assert row["crops_per_s"] > 0 and row["p50_ms"] <= row["p99_ms"]
        assert math.isfinite(row["ratio_vs_baseline"]) and row["ratio_vs_baseline"] > 0
        assert math.isfinite(row["gflops_per_s"])
        assert 0 <= row["max_abs_diff"] < 0.5
    assert all(r["ratio_vs_baseline"] == 1.0 for r in baseline.values())
    reduced = [r for r in report["rows"] if r["variant"] == "eager bf16"]
    assert reduced and all(r["max_abs_diff"] > 0 for r in reduced)
    skipped = {s["variant"]: s["reason"] for s in report["skipped"]}
    assert "CUDA" in skipped["fp16 +CUDA graph"]
    assert "--compile on" in skipped["torch.compile"]
    assert (out / "gpu-bench.md").read_text().count("| eager fp32 |") == 3  # 2 rows, 1 ratio
    lines = done.stdout.strip().splitlines()
    header = "| x crops/s vs eager fp32 | batch 1 | batch 2 |"
    last = max(i for i, line in enumerate(lines) if line == header)
    ratios = lines[last + 2 :]  # printed last: nothing but the ratio rows follows
    assert len(ratios) == len({r["variant"] for r in report["rows"]})
    assert all(line.startswith("| ") for line in ratios)


def test_plain_torch_network_is_smp_unet(gpu_bench: ModuleType) -> None:
    smp = gpu_bench.load_model(BUNDLE, "smp")
    plain = gpu_bench.load_model(BUNDLE, "plain")
    assert "segmentation-models-pytorch" in smp.source and "plain-torch" in plain.source
    assert smp.network.state_dict().keys() == plain.network.state_dict().keys()
    crops = gpu_bench.sample_crops(smp.spec.input_size, 2, seed=5)
    with torch.inference_mode():
        expected, actual = smp.deployed(crops), plain.deployed(crops)
    assert expected.shape == (2, 224, 224) and expected.std() > 0.01
    assert float((expected - actual).abs().max()) < 1e-5


def test_safetensors_reader_matches_the_library(gpu_bench: ModuleType) -> None:
    from safetensors.torch import load_file

    path = BUNDLE / "weights.safetensors"
    expected, actual = load_file(str(path)), gpu_bench.read_safetensors(path)
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype and torch.equal(actual[name], tensor), name
