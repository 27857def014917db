"""``benchmarks/engine.py`` run as a program with tiny settings: the measured peak, every
CPU engine against torch eager, the int8 twin built from a face clip, the parity table,
and the ratios last.

The script is never imported: it runs in a child process, as a person runs it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.support.benchmarks import run_benchmark
from tests.support.media import face_clip, write_video


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@pytest.mark.slow
def test_tiny_run_reports_peak_engines_parity_and_ratios(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    clip = write_video(tmp_path / "face.mp4", face_clip(astronaut, 20, (640, 480)))
    argv = ["--batch", "1", "--seconds", "0.2", "--peak-seconds", "0.05", "--gemm-seconds"]
    argv += ["0.05", "--profile-batch", "1", "--data", str(tmp_path / "no-data")]
    argv += ["--calibration", str(clip), "--out", str(tmp_path / "engine.md")]
    done = run_benchmark("engine", *argv)
    report = (tmp_path / "engine.md").read_text()
    lines = report.splitlines()

    # the peak, measured by the C loop where there is a C compiler
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        assert "**Not measured** (no C compiler" in report
    else:
        (f32,) = [line for line in lines if line.startswith("| f32 |")]
        assert "_mm" in cells(f32)[1] and float(cells(f32)[5]) > 0
    # every CPU engine timed, torch eager the baseline, each a fraction of its peak
    rows: dict[str, list[str]] = {}
    for line in lines:  # the first table that names an engine is the timing table
        if line.startswith("| ") and "/cpu/" in line:
            rows.setdefault(cells(line)[0], cells(line))
    for label in ("torch/cpu/f32", "openvino/cpu/f32", "openvino/cpu/bf16", "openvino/cpu/int8"):
        row = rows[label]
        assert float(row[3]) > 0 and float(row[6]) > 0 and 0 < float(row[8].rstrip("%")) < 150
    assert rows["torch/cpu/f32"][6] == "1.00"
    # every precision is timed whatever its parity; the recorded checks are named
    assert "openvino/int8: twin calibrated here on" in report
    assert "openvino/bf16: recorded parity check failed, score difference 0.13" in report
    assert "| depthwise conv 3x3 |" in report  # OpenVINO's profile, by layer kind
    # the reduced precisions against openvino f32 on the clip's face crops
    parity = [line for line in lines if line.startswith("| openvino/cpu/int8 |")]
    assert len(parity) == 4 and 0 < float(cells(parity[1])[2]) < 1  # engines, parity, 2 ratios
    assert "Skipped: no development samples, or --no-accuracy." in report
    # the ratios come last, on stdout as in the file
    assert done.stdout.rstrip().splitlines()[-1].startswith("Target 70% of peak: ")
    assert report.index("## Ratios") > report.index("## Accuracy cost")
