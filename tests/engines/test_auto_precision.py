"""``engine.precision: auto`` opens only what a trusted parity check allows.

The selection is checked over manifests in every state (no check, failed, passed on
this machine, passed elsewhere, with other runtime versions, of the older format), by
hand and with hypothesis; then end to end on a bundle and on the shipped one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakewatch.cli.main import main
from fakewatch.engines.auto_precision import (
    FASTEST_FIRST,
    choose_precision,
    distrust,
    measured_here,
)
from fakewatch.engines.bundle import (
    Artifact,
    EngineBundle,
    Manifest,
    MeasuredOn,
    PrecisionCheck,
)
from fakewatch.engines.defaults import default_bundle_path
from fakewatch.engines.machine import cpu_kind
from fakewatch.engines.runtimes import open_engine
from fakewatch.engines.spec import ModelSpec

HERE = MeasuredOn(
    cpu="AMD EPYC 9R14",
    cpu_kind=["x86_64", "avx2", "avx512_bf16", "avx512_vnni", "avx512f"],
    gpu="NVIDIA H200",
    gpu_capability="9.0",
    runtimes={"openvino": "2026.4.0", "torch": "2.14.1", "tensorrt": "10.13.0"},
)
ELSEWHERE = MeasuredOn(
    cpu="Intel Xeon E5-2690 v4",
    cpu_kind=["x86_64", "avx2"],
    gpu="NVIDIA T4",
    gpu_capability="7.5",
    runtimes=HERE.runtimes,
)
OLDER_RUNTIME = HERE.model_copy(update={"runtimes": {**HERE.runtimes, "openvino": "2025.1.0"}})


def artifact(path: str) -> Artifact:
    return Artifact(path=path, sha256="0" * 64, bytes=1)


def manifest(checks: list[PrecisionCheck], int8_twin: bool = True) -> Manifest:
    files = {"weights": artifact("w"), "onnx": artifact("m.onnx")}
    if int8_twin:
        files["onnx_int8"] = artifact("m.int8.onnx")
    return Manifest(name="t", spec=ModelSpec(), artifacts=files, precision_checks=checks)


def check(
    backend: str,
    precision: str,
    passed: bool = True,
    measured_on: MeasuredOn | None = HERE,
    held_out: bool = True,
    device: str = "cpu",
) -> PrecisionCheck:
    return PrecisionCheck(
        backend=backend,
        precision=precision,
        device=device,
        max_abs_diff=0.1,
        mean_abs_diff=0.004,
        score_max_abs_diff=0.01 if passed else 0.2,
        tolerance=0.03,
        mean_tolerance=0.02,
        calibration="test crops",
        crops=10,
        held_out=held_out,
        measured_on=measured_on,
        passed=passed,
    )


def test_no_checks_means_f32_and_says_so() -> None:
    choice = choose_precision(manifest([]), "openvino", "cpu", HERE)
    assert choice.precision == "f32"
    assert "int8 has no parity check" in choice.reason
    assert "bf16 has no parity check" in choice.reason


def test_the_fastest_trusted_precision_wins() -> None:
    both = manifest([check("openvino", "bf16"), check("openvino", "int8")])
    assert choose_precision(both, "openvino", "cpu", HERE).precision == "int8"
    only_bf16 = manifest([check("openvino", "bf16"), check("openvino", "int8", passed=False)])
    choice = choose_precision(only_bf16, "openvino", "cpu", HERE)
    assert choice.precision == "bf16"
    assert "passed its parity check" in choice.reason


@pytest.mark.parametrize(
    ("recorded", "why"),
    [
        (check("openvino", "bf16", passed=False), "failed its parity check"),
        (check("openvino", "bf16", measured_on=ELSEWHERE), "another kind of CPU"),
        (check("openvino", "bf16", measured_on=OLDER_RUNTIME), "checked with openvino 2025"),
        (check("openvino", "bf16", measured_on=None), "older format"),
        (check("openvino", "bf16", held_out=False), "older format"),
        (check("openvino", "bf16", device="cuda"), "has no parity check"),
    ],
)
def test_an_untrusted_check_keeps_f32(recorded: PrecisionCheck, why: str) -> None:
    choice = choose_precision(manifest([recorded]), "openvino", "cpu", HERE)
    assert choice.precision == "f32"
    assert why in choice.reason


def test_int8_needs_its_twin_in_the_bundle() -> None:
    choice = choose_precision(
        manifest([check("openvino", "int8")], int8_twin=False), "openvino", "cpu", HERE
    )
    assert choice.precision == "f32"
    assert "no int8 twin" in choice.reason


def test_a_gpu_check_is_trusted_on_the_same_compute_capability_only() -> None:
    fp16 = check("tensorrt", "fp16", device="cuda")
    assert choose_precision(manifest([fp16]), "tensorrt", "cuda", HERE).precision == "fp16"
    other_gpu = check("tensorrt", "fp16", device="cuda", measured_on=ELSEWHERE)
    choice = choose_precision(manifest([other_gpu]), "tensorrt", "cuda", HERE)
    assert choice.precision == "f32"
    assert "compute capability 7.5" in choice.reason
    assert choose_precision(manifest([]), "tensorrt", "cuda", HERE).precision == "f32"


def test_a_backend_without_reduced_precision_says_so() -> None:
    choice = choose_precision(manifest([]), "onnxruntime", "cpu", None)
    assert choice.precision == "f32"
    assert "offers no reduced precision" in choice.reason


PLACES = st.sampled_from([HERE, ELSEWHERE, OLDER_RUNTIME, None])
CHECKS = st.builds(
    check,
    backend=st.sampled_from(["openvino", "torch", "tensorrt", "onnxruntime"]),
    precision=st.sampled_from(["int8", "bf16", "fp16", "f32"]),
    passed=st.booleans(),
    measured_on=PLACES,
    held_out=st.booleans(),
    device=st.sampled_from(["cpu", "cuda"]),
)


@settings(max_examples=300, deadline=None)
@given(
    checks=st.lists(CHECKS, max_size=8),
    twin=st.booleans(),
    where=st.sampled_from(sorted(FASTEST_FIRST)),
)
def test_auto_never_picks_a_failed_missing_or_foreign_check(
    checks: list[PrecisionCheck], twin: bool, where: tuple[str, str]
) -> None:
    backend, kind = where
    m = manifest(checks, twin)
    choice = choose_precision(m, backend, kind, HERE)
    assert choice.precision in FASTEST_FIRST[where]
    if choice.precision != "f32":
        # the latest record for this backend, precision and device is the one that counts
        latest = m.precision_check(backend, choice.precision, kind)
        assert latest is not None and latest.passed and latest.held_out
        assert latest.measured_on is not None
        assert distrust(latest, HERE) is None
    # and nothing faster had a trusted check
    faster = FASTEST_FIRST[where][: FASTEST_FIRST[where].index(choice.precision)]
    for precision in faster:
        recorded = m.precision_check(backend, precision, kind)
        trusted = distrust(recorded, HERE) is None
        assert not trusted or (precision == "int8" and not twin)


def test_this_machine_is_described_by_its_instruction_sets() -> None:
    here = measured_here("openvino")
    assert here.cpu_kind == cpu_kind()
    assert "openvino" in here.runtimes
    assert cpu_kind({"avx2", "avx512_bf16", "sse4_2"})[1:] == ["avx2", "avx512_bf16"]


@pytest.fixture
def calibration_dir(tmp_path: Path, astronaut: np.ndarray) -> Path:
    folder = tmp_path / "calibration"
    folder.mkdir()
    for i, scale in enumerate((1.0, 0.7, 1.4, 0.85)):
        image = cv2.resize(astronaut, None, fx=scale, fy=scale)
        cv2.imwrite(str(folder / f"face{i}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def test_auto_opens_a_checked_precision_and_says_why(
    untrained_bundle_dir: Path, tmp_path: Path, calibration_dir: Path
) -> None:
    folder = Path(shutil.copytree(untrained_bundle_dir, tmp_path / "bundle"))
    before = open_engine(EngineBundle.load(folder))
    assert before.info.precision == "f32"
    assert "bf16 has no parity check" in before.info.reason
    # random weights move masks more than trained ones: only the check's limits matter here
    build = ["engine", "build", str(folder), "--backend", "openvino", "--precision", "bf16"]
    limits = ["--tolerance", "0.05", "--mean-tolerance", "0.2"]
    assert main([*build, "--calibration", str(calibration_dir), *limits]) == 0
    bundle = EngineBundle.load(folder)
    recorded = bundle.manifest.precision_check("openvino", "bf16")
    assert recorded is not None and recorded.held_out and recorded.measured_on is not None
    assert recorded.crops_media == ["face1.jpg", "face3.jpg"]
    assert recorded.measured_on.cpu_kind == cpu_kind()
    engine = open_engine(bundle)
    assert engine.info.label == "openvino/cpu/bf16"
    assert "passed its parity check" in engine.info.reason


def test_the_shipped_bundle_runs_f32_and_says_why() -> None:
    bundle = EngineBundle.load(default_bundle_path())
    for precision in ("bf16", "int8"):
        recorded = bundle.manifest.precision_check("openvino", precision, "cpu")
        assert recorded is not None and not recorded.passed
        assert recorded.held_out and recorded.measured_on is not None
        assert recorded.crops_sha256 is not None
    assert "onnx_int8" not in bundle.manifest.artifacts  # a failed twin is not shipped
    choice = choose_precision(bundle.manifest, "openvino", "cpu", measured_here("openvino"))
    assert choice.precision == "f32"
    assert "int8 failed its parity check" in choice.reason
    assert "bf16 failed its parity check" in choice.reason


def test_the_service_logs_and_exports_what_auto_picked(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    import logging

    from tests.support.service import serving

    async def run() -> str:
        async with serving() as service:
            return await service.metrics_text()

    with caplog.at_level(logging.INFO, logger="fakewatch"):
        text = asyncio.run(run())
    (info,) = [line for line in text.splitlines() if line.startswith("fakewatch_build_info{")]
    assert 'engine="openvino/cpu/f32"' in info
    assert 'precision="f32"' in info
    assert "bf16 failed its parity check" in info
    picked = [r.getMessage() for r in caplog.records if r.name == "fakewatch.engines"]
    assert any("openvino/cpu/f32 (auto)" in m and "int8 failed" in m for m in picked)
    # naming a precision is reported as such
    with caplog.at_level(logging.INFO, logger="fakewatch"):

        async def named() -> str:
            async with serving(**{"engine.precision": "f32"}) as service:
                return await service.metrics_text()

        assert 'precision_reason="asked for in engine.precision"' in asyncio.run(named())
