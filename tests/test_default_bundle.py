"""The shipped default engine: intact, calibrated, consistent across runtimes, and
scoring the FaceForensics++ fake above its original."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fakewatch.cli.main import main
from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.crop import crop_face
from fakewatch.engines.defaults import default_bundle_path
from fakewatch.engines.faces import default_face_detector
from fakewatch.engines.runtimes import open_engine
from fakewatch.engines.scoring import score_masks

MAX_BUNDLE_BYTES = 20_000_000


@pytest.fixture(scope="module")
def bundle() -> EngineBundle:
    return EngineBundle.load(default_bundle_path())


def test_is_small_calibrated_and_documented(bundle: EngineBundle) -> None:
    size = sum(p.stat().st_size for p in bundle.folder.rglob("*") if p.is_file())
    assert size <= MAX_BUNDLE_BYTES
    thresholds = bundle.manifest.thresholds
    assert {"suspect", "clear"} <= set(thresholds)
    assert thresholds["clear"].value <= thresholds["suspect"].value
    assert thresholds["suspect"].false_positive_rate is not None
    assert bundle.manifest.provenance.recipe and bundle.manifest.provenance.metrics


def test_runtimes_agree_on_a_real_face(bundle: EngineBundle, astronaut: np.ndarray) -> None:
    face = default_face_detector().detect(astronaut)[0]
    spec = bundle.spec
    crops = np.stack(
        [
            crop_face(astronaut, face.box, spec.input_size, spec.crop_margin).image,
            astronaut[:224, :224],
        ]
    )
    reference = open_engine(bundle, "torch").infer(crops)
    ref_scores, _ = score_masks(reference, spec.crop_margin)
    for backend in ("onnxruntime", "openvino"):
        masks = open_engine(bundle, backend).infer(crops)
        scores, _ = score_masks(masks, spec.crop_margin)
        assert float(np.abs(masks - reference).mean()) < 2e-3, backend
        assert float(np.abs(scores - ref_scores).max()) < 0.01, backend


def test_the_ffpp_fake_scores_above_its_original(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    videos = shared_data / "ffpp-dev"
    real = videos / "original_sequences/youtube/c23/videos/519.mp4"
    fake = videos / "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4"
    scores = {}
    for name, path in (("real", real), ("fake", fake)):
        report = tmp_path / f"{name}.json"
        assert (
            main(["scan", str(path), "--report", str(report), "--quiet", "--max-frames", "60"]) == 0
        )
        scores[name] = json.loads(report.read_text())["score"]
    print(f"519.mp4 {scores['real']:.3f}, 519_515.mp4 {scores['fake']:.3f}")
    assert scores["fake"] > scores["real"]


@pytest.mark.slow
def test_offline_demo_with_a_clip_of_ones_own(
    astronaut: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.media import face_clip, write_video

    clip = write_video(tmp_path / "mine.mp4", face_clip(astronaut, count=70), fps=5)
    cache = str(tmp_path / "cache")
    assert main(["demo", "--offline", "--clip", str(clip), "--cache", cache]) == 0
    out = capsys.readouterr().out
    assert "window score per second" in out and "manipulated span 4-12 s" in out
    results = tmp_path / "cache" / "results"
    for name in (
        "real.json",
        "manipulated.json",
        "real.annotated.mp4",
        "manipulated.annotated.mp4",
    ):
        assert (results / name).is_file(), name
    real = json.loads((results / "real.json").read_text())
    manipulated = json.loads((results / "manipulated.json").read_text())
    assert real["frames_analysed"] == manipulated["frames_analysed"] == 70


def test_live_demo_serves_ones_own_clip_as_a_looping_stream(
    astronaut: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.media import face_clip, write_video

    clip = write_video(tmp_path / "mine.mp4", face_clip(astronaut, count=20), fps=10)
    args = ["demo", "--clip", str(clip), "--cache", str(tmp_path / "cache")]
    assert main([*args, "--port", "0", "--duration", "6"]) == 0
    captured = capsys.readouterr()
    assert "fakewatch is watching two looping streams of mine.mp4" in captured.out
    assert "/api/streams" in captured.out and "/metrics" in captured.out
    for stream in ("demo", "real"):
        assert f"stream.up stream={stream}" in captured.err
        assert f"stream.removed stream={stream}" in captured.err
    # 2 s clips looping for 6 s: a file restarts without a stream.down
    assert "stream.down" not in captured.err
