"""``fakewatch scan`` of files: report, full-resolution masks, annotated video, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from fakewatch.cli.main import main
from tests.support.media import face_clip, write_video


def scan_report(path: Path, bundle: Path, report: Path, *options: str) -> dict[str, Any]:
    """Run ``fakewatch scan`` quietly; assert it succeeded and return its JSON report."""
    status = main(
        ["scan", str(path), "--engine", str(bundle), "--report", str(report), "--quiet", *options]
    )
    assert status == 0
    result: dict[str, Any] = json.loads(report.read_text())
    return result


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    return write_video(folder / "drift.mp4", face_clip(astronaut, count=20), fps=10)


def test_scan_writes_report_masks_and_annotated_video(
    clip: Path, untrained_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    masks, annotated = tmp_path / "masks", tmp_path / "a.mp4"
    report = scan_report(
        clip,
        untrained_bundle_dir,
        tmp_path / "r.json",
        "--save-masks",
        str(masks),
        "--annotate",
        str(annotated),
    )
    assert report["verdict"] in ("fake", "real")
    assert 0 <= report["score"] <= 1
    assert report["threshold_calibrated"] is False and report["threshold"] == 0.5
    # 10 fps analysed at about 5 fps: every 2nd frame
    assert [f["index"] for f in report["frames"]] == list(range(0, 20, 2))
    assert report["frames"][1]["time_s"] == pytest.approx(0.2, abs=0.01)
    face = report["frames"][0]["faces"][0]
    assert len(face["box"]) == 4 and 0 <= face["score"] <= 1 and 0 <= face["area"] <= 1
    pngs = sorted(masks.glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(0, 20, 2)]
    mask = cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (240, 320) and mask.dtype == np.uint8
    assert mask[:, :5].max() == 0  # background far from the face stays empty
    with av.open(str(annotated)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 10
    assert "frames analysed" in capsys.readouterr().out


def test_scan_an_image(astronaut: np.ndarray, untrained_bundle_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    report = scan_report(image, untrained_bundle_dir, tmp_path / "r.json")
    assert report["frames_analysed"] == 1 and len(report["frames"][0]["faces"]) == 1


def test_no_face_verdict(untrained_bundle_dir: Path, tmp_path: Path) -> None:
    frames = [np.full((120, 160, 3), 40 + i, dtype=np.uint8) for i in range(6)]
    clip = write_video(tmp_path / "empty.mp4", frames, fps=5)
    report = scan_report(clip, untrained_bundle_dir, tmp_path / "r.json")
    assert report["verdict"] == "no-face" and report["score"] is None


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.mp4", None, "does not exist"),
        ("broken.mp4", b"\x00" * 64, "cannot be opened"),
        ("notes.txt", b"hi", "unknown media type"),
    ],
)
def test_bad_input_is_a_clear_error(
    untrained_bundle_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | None,
    message: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["scan", str(path), "--engine", str(untrained_bundle_dir), "--quiet"]) == 2
    assert message in capsys.readouterr().err
