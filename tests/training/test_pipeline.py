"""``fakewatch train`` and ``fakewatch evaluate`` end to end on media made on the fly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from fakewatch.cli.main import main
from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.faces import default_face_detector
from fakewatch.training.config import ConfigError, load_config
from tests.support.media import face_clip, manipulate, write_video


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """real/: photos and a clip of the astronaut; pairs/: that clip and an edited twin."""
    root = tmp_path_factory.mktemp("data")
    real = root / "real"
    real.mkdir()
    for i, scale in enumerate((0.6, 1.0)):
        image = cv2.resize(astronaut, None, fx=scale, fy=scale)
        cv2.imwrite(str(real / f"photos__astronaut{i}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    clip = face_clip(astronaut)
    write_video(real / "clips__drift.mp4", clip)
    face = default_face_detector().detect(clip[0])[0].box
    x0, y0 = int(face.x0 + face.width * 0.2), int(face.y0 + face.height * 0.5)
    x1, y1 = int(face.x1 - face.width * 0.2), int(face.y1 - face.height * 0.05)
    edited = [manipulate(frame, (x0 + 2 * i, y0, x1 + 2 * i, y1)) for i, frame in enumerate(clip)]
    write_video(root / "pairs" / "real" / "astro_0.mp4", clip)
    write_video(root / "pairs" / "fake" / "astro_0.mp4", edited)
    return root


def write_config(folder: Path, data_root: Path, epochs: int) -> Path:
    config = {
        "name": "tiny",
        "output": "run",
        "spec": {"input_size": 64, "decoder_channels": [32, 16, 16, 8, 8]},
        "data": [
            {"path": str(data_root / "real"), "layout": "real", "every": 2},
            {"path": str(data_root / "pairs"), "layout": "pairs", "every": 2},
        ],
        "split": {"validation_sources": ["photos"], "test_sources": ["clips"]},
        "optimisation": {
            "epochs": epochs,
            "steps_per_epoch": 3,
            "batch_size": 4,
            "warmup_steps": 2,
            "workers": 0,
            "device": "cpu",
            "threads": 2,
        },
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_train_evaluate_and_calibrate(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, data_root, epochs=2)
    assert main(["train", str(config), "--quiet"]) == 0
    run = tmp_path / "run"
    summary = json.loads((run / "data.json").read_text())
    assert summary["real_faces"]["validation"] > 0 and summary["fake_frames"]["train"] > 0
    assert "photos" in summary["validation_sources"]
    # the test source is cached like the rest but neither trains nor validates
    assert summary["real_faces_by_source"]["test"] == {"clips": summary["real_faces"]["test"]}
    assert "clips" not in summary["real_faces_by_source"]["train"]
    assert "clips" not in summary["real_faces_by_source"]["validation"]
    bundle = EngineBundle.load(run / "bundle")
    assert bundle.manifest.name == "tiny"
    assert "input_size: 64" in bundle.manifest.provenance.recipe
    assert "val_loss" in bundle.manifest.provenance.metrics
    assert len((run / "metrics.csv").read_text().splitlines()) == 3

    # resuming continues from the checkpoint instead of starting again
    write_config(tmp_path, data_root, epochs=3)
    assert main(["train", str(config), "--quiet"]) == 0
    assert len((run / "metrics.csv").read_text().splitlines()) == 4
    assert json.loads((run / "state.json").read_text())["step"] == 9

    out = tmp_path / "evaluation"
    status = main(
        [
            "evaluate",
            str(run / "bundle"),
            str(data_root / "pairs"),
            str(data_root / "real"),
            "--compare",
            str(run / "bundle"),
            "--out",
            str(out),
            "--calibrate",
            "--quiet",
        ]
    )
    assert status == 0
    report = json.loads((out / "report.json").read_text())
    first = report["bundles"][0]
    assert first["frame"]["n_real"] > 0 and first["frame"]["n_fake"] > 0
    assert first["video"]["n_fake"] == 1
    assert first["pixel_pairs"]["n_samples"] > 0
    assert set(first["frame_by_source"]) >= {"pairs", "pairs/live-swap", "photos", "clips"}
    assert first["thresholds_written"] is True
    assert report["bundles"][1]["frame"] == first["frame"]  # the same bundle, compared
    for png in ("roc_pr_frames.png", "frame_scores.png", "masks.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    thresholds = EngineBundle.load(run / "bundle").manifest.thresholds
    assert thresholds["clear"].value <= thresholds["suspect"].value
    assert thresholds["suspect"].false_positive_rate is not None
    assert "frame AUC" in capsys.readouterr().out

    # the recipe's splits: calibrate on validation, report on test, never calibrate there
    def on_split(part: str, out: str, *extra: str) -> int:
        command = ["evaluate", str(run / "bundle"), "--recipe", str(config), "--split", part]
        return main([*command, "--out", str(tmp_path / "split" / out), "--quiet", *extra])

    def report_of(out: str) -> dict[str, Any]:
        report = json.loads((tmp_path / "split" / out / "report.json").read_text())
        bundle: dict[str, Any] = report["bundles"][0]
        return bundle

    assert on_split("validation", "v", "--calibrate") == 0
    validation = report_of("v")
    assert set(validation["frame_by_source"]) >= {"photos"}
    assert "clips" not in validation["frame_by_source"]
    assert validation["calibrated_thresholds"]["suspect"]["chosen_on"].startswith(
        "window scores of the validation split"
    )
    assert on_split("test", "t") == 0
    test = report_of("t")
    assert set(test["frame_by_source"]) == {"clips"}
    assert test["frame"]["auc_ci"] is None  # real media only: no AUC, so no interval
    assert test["real_windows"]["n"] > 0
    assert on_split("test", "x", "--calibrate") == 2


def test_overrides_and_data_root(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, data_root, epochs=1)
    raw = yaml.safe_load(path.read_text())
    for source in raw["data"]:
        source["path"] = Path(source["path"]).name
    raw["data_root"] = "elsewhere"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="set FAKEWATCH_DATA_ROOT"):
        load_config(path)
    monkeypatch.setenv("FAKEWATCH_DATA_ROOT", str(data_root))
    config = load_config(path, overrides=["init.encoder=efficientnet-lite0", "spec.input_size=96"])
    assert config.data[0].path == data_root / "real"
    assert config.init.encoder == "efficientnet-lite0" and config.spec.input_size == 96
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        load_config(path, overrides=["init.encoder"])
    with pytest.raises(ConfigError, match="init_typo"):
        load_config(path, overrides=["init_typo.encoder=none"])


def test_bad_configs_are_refused_with_the_reason(tmp_path: Path, data_root: Path) -> None:
    path = write_config(tmp_path, data_root, epochs=1)
    config = yaml.safe_load(path.read_text())
    config["optimisation"]["learning_rat"] = 0.1
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="learning_rat"):
        load_config(path)
    config["optimisation"].pop("learning_rat")
    config["data"][0]["path"] = str(tmp_path / "missing")
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(path)
    config["data"] = [config["data"][1] | {"layout": "real", "path": str(data_root / "real")}]
    config["synthesis"] = {"self_blend": 0, "cross_blend": 0}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="no fakes to learn from"):
        load_config(path)
