"""Face tracks continue by IoU across detections and end after missed detections."""

from __future__ import annotations

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
