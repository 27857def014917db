"""Face tracks continue by IoU across detections, end after missed detections, and follow
a moving face by optical flow between detections."""

from __future__ import annotations

import cv2
import numpy as np

from fakewatch.engines.crop import Box
from fakewatch.engines.faces import Face
from fakewatch.stream.analysis.tracker import FaceTracker


def face(x: float, y: float, side: float = 100) -> Face:
    return Face(Box(x, y, x + side, y + side), 0.99)


def test_tracks_follow_moving_faces_and_keep_their_ids() -> None:
    tracker = FaceTracker(iou_threshold=0.3, max_missed=1)
    first = tracker.update([face(0, 0), face(300, 0)])
    assert [t.id for t in first] == ["t1", "t2"]
    moved = tracker.update([face(310, 5), face(10, 5)])  # order changed, both moved a bit
    assert [t.id for t in moved] == ["t2", "t1"]
    assert moved[0].box == Box(310, 5, 410, 105)


def test_a_new_face_starts_a_track_and_a_lost_one_ends() -> None:
    tracker = FaceTracker(iou_threshold=0.3, max_missed=1)
    tracker.update([face(0, 0)])
    assert [t.id for t in tracker.update([face(500, 500)])] == ["t2"]
    assert tracker.ended == [] and [t.id for t in tracker.tracks] == ["t2"]
    tracker.update([face(500, 500)])
    assert tracker.ended == ["t1"]
    assert tracker.reset() == ["t2"] and tracker.tracks == []


def test_one_detection_continues_one_track_only() -> None:
    tracker = FaceTracker(iou_threshold=0.3, max_missed=0)
    tracker.update([face(0, 0), face(20, 0)])
    tracks = tracker.update([face(10, 0)])
    assert len(tracks) == 1 and len(tracker.ended) == 1


def textured_scene(
    size: tuple[int, int], face_box: Box, seed: int = 1, background: bool = True
) -> np.ndarray:
    """An RGB frame: a smooth grey background (or textured, ``background``) with a
    textured "face" patch of random blobs drawn at ``face_box``."""
    height, width = size
    frame = np.full((height, width, 3), 90, np.uint8)
    if background:
        rng = np.random.default_rng(99)
        noise = rng.integers(0, 255, (height // 16 + 1, width // 16 + 1), dtype=np.uint8)
        frame[:] = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)[..., None]
    rng = np.random.default_rng(seed)
    side = (round(face_box.width), round(face_box.height))
    patch = np.zeros((side[1], side[0], 3), np.float32)
    for cells in (2, 4, 8):  # coarse shapes and fine detail, as a face has
        texture = rng.uniform(-1, 1, (cells, cells, 3)).astype(np.float32)
        patch += 60 * cv2.resize(texture, side, interpolation=cv2.INTER_CUBIC)
    patch = np.clip(patch + 128, 0, 255).astype(np.uint8)
    x0, y0 = round(face_box.x0), round(face_box.y0)
    frame[y0 : y0 + side[1], x0 : x0 + side[0]] = patch
    return frame


def moving_box(step: int) -> Box:
    """The face's box at ``step``: it moves right and down, and grows a little."""
    side = 120 + 4 * step
    x, y = 100 + 25 * step, 80 + 10 * step
    return Box(x, y, x + side, y + side)


def test_flow_keeps_the_box_on_a_moving_face_where_a_frozen_box_falls_behind() -> None:
    followed, frozen = FaceTracker(), FaceTracker()
    first = textured_scene((480, 640), moving_box(0))
    followed.update([Face(moving_box(0), 0.99)], first)
    frozen.update([Face(moving_box(0), 0.99)])  # no image: the box is not followed
    for step in range(1, 6):
        frame = textured_scene((480, 640), moving_box(step))
        (track,) = followed.follow(frame)
        (still,) = frozen.follow(frame)
        assert track.box.iou(moving_box(step)) > 0.85, (step, track.box)
        assert still.box == moving_box(0)
    assert moving_box(0).iou(moving_box(5)) < 0.2  # the frozen box lost the face
    assert not followed.wants_detection


def test_a_failed_flow_keeps_the_last_box_and_asks_for_a_detection() -> None:
    tracker = FaceTracker()
    tracker.update([Face(moving_box(0), 0.99)], textured_scene((480, 640), moving_box(0)))
    (track,) = tracker.follow(textured_scene((480, 640), moving_box(1)))
    last = track.box
    blank = np.zeros((480, 640, 3), np.uint8)  # the face is gone: nothing to follow
    (track,) = tracker.follow(blank)
    assert track.box == last and tracker.wants_detection
    (track,) = tracker.follow(textured_scene((480, 640), moving_box(2)))
    assert track.box == last  # not followed again until a detection
    tracker.update([Face(moving_box(2), 0.99)], textured_scene((480, 640), moving_box(2)))
    assert not tracker.wants_detection
    (track,) = tracker.follow(textured_scene((480, 640), moving_box(3)))
    assert track.box.iou(moving_box(3)) > 0.85


def test_a_featureless_face_is_not_moved() -> None:
    tracker = FaceTracker()
    flat = np.full((480, 640, 3), 128, np.uint8)
    tracker.update([Face(moving_box(0), 0.99)], flat)
    (track,) = tracker.follow(flat)
    assert track.box == moving_box(0) and tracker.wants_detection
