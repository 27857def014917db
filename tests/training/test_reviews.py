"""Reviewed alerts back into training: ``fakewatch export-reviews`` writes a person's
verdicts as crops and masks, and ``fakewatch train`` reads them with their labels."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from fakewatch.cli.main import main
from fakewatch.engines.faces import default_face_detector
from fakewatch.training.config import load_config
from fakewatch.training.data import prepare
from tests.stream.test_evidence import suspected
from tests.support.service import serving
from tests.training.test_pipeline import data_root, write_config

__all__ = ["data_root"]  # the fixture, shared with the pipeline tests


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """A service's state folder with two alerts reviewed through the API: the first a
    false positive, the second confirmed."""
    state = tmp_path_factory.mktemp("state")
    wrong, right, unreviewed = (suspected(astronaut) for _ in range(3))

    async def run() -> None:
        async with serving(state) as service:
            for event in (wrong, right, unreviewed):
                for sink in service.pipeline.sinks:
                    await sink.emit(event)
            for event, verdict in ((wrong, "false_positive"), (right, "confirmed")):
                async with service.http.post(
                    f"/api/events/{event.id}/review", json={"verdict": verdict}
                ) as response:
                    assert response.status == 200

    asyncio.run(run())
    (state / "ids.json").write_text(json.dumps({"fp": wrong.id, "confirmed": right.id}))
    return state


def test_export_reviews_writes_reals_and_fakes(
    tmp_path: Path, reviewed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = json.loads((reviewed / "ids.json").read_text())
    out = tmp_path / "reviews"
    assert main(["export-reviews", str(out), "--evidence", str(reviewed / "evidence")]) == 0
    assert "1 false positives (reals) and 1 confirmed" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "false_positive").iterdir()) == [
        f"{ids['fp']}.jpg",
        f"{ids['fp']}.png",
    ]
    empty = cv2.imread(str(out / "false_positive" / f"{ids['fp']}.png"), cv2.IMREAD_GRAYSCALE)
    assert empty.max() == 0
    mask = cv2.imread(str(out / "confirmed" / f"{ids['confirmed']}.png"), cv2.IMREAD_GRAYSCALE)
    assert set(np.unique(mask)) == {0, 255}  # the evidence mask (0.9 on the face), thresholded
    assert (mask > 0).mean() == pytest.approx(110 * 120 / 224**2, abs=0.01)
    manifest = json.loads((out / "reviews.json").read_text())
    assert {k: v["verdict"] for k, v in manifest.items()} == {
        ids["fp"]: "false_positive",
        ids["confirmed"]: "confirmed",
    }
    assert manifest[ids["fp"]]["stream"] == "door"


@pytest.mark.slow
def test_train_reads_reviews_with_their_labels(
    tmp_path: Path, reviewed: Path, data_root: Path
) -> None:
    ids = json.loads((reviewed / "ids.json").read_text())
    out = tmp_path / "reviews"
    assert main(["export-reviews", str(out), "--evidence", str(reviewed / "evidence")]) == 0
    recipe = write_config(tmp_path, data_root, epochs=1)
    raw = yaml.safe_load(recipe.read_text())
    raw["reviews"] = {"folders": ["reviews"], "weight": 0.5}
    recipe.write_text(yaml.safe_dump(raw))
    assert main(["train", str(recipe), "--quiet"]) == 0
    summary = json.loads((tmp_path / "run" / "data.json").read_text())
    assert summary["reviews"] == {"false_positive": 1, "confirmed": 1}

    data = prepare(load_config(recipe), default_face_detector(), progress=False)
    train = data.train
    assert train.weights[train.kinds.index("reviewed")] > 0
    by_id = {r.event_id: r for r in train.reviewed}
    assert by_id[ids["fp"]].label == 0.0 and by_id[ids["fp"]].mask.max() == 0
    assert by_id[ids["confirmed"]].label == 1.0 and by_id[ids["confirmed"]].mask.max() == 1
    assert by_id[ids["fp"]].crop.shape == (64, 64, 3)  # the recipe's input size
    # the samples drawn as reviewed carry the person's label
    labels = {
        train[i][2]
        for i in range(len(train))
        if np.random.default_rng([train.seed, i]).choice(len(train.kinds), p=train.weights)
        == train.kinds.index("reviewed")
    }
    assert labels == {0.0, 1.0}
