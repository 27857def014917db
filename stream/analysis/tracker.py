"""Face tracks between detections: boxes matched by IoU, so detection can run less often.

The detector runs on every k-th analysed frame; on the frames between, each track keeps
its last box (at 5 analysed frames per second a talking head moves little between
detections, and the crop's 1.3x margin absorbs it). On a detection frame, detections
are matched to tracks greedily by IoU, highest first; a match continues the track, an
unmatched detection starts one, and a track unmatched for more than ``max_missed``
detections ends.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from fakewatch.engines.crop import Box
from fakewatch.engines.faces import Face


@dataclass
class Track:
    """One face followed over time; ``id`` is unique within its stream (``t1``, ``t2``...)."""

    id: str
    box: Box
    detector_score: float
    hits: int = 1
    missed: int = 0


class FaceTracker:
    """IoU tracking of detected faces; see the module docstring."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 2) -> None:
        if not 0 < iou_threshold < 1:
            raise ValueError(f"iou_threshold must be in (0, 1), got {iou_threshold}")
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._tracks: list[Track] = []
        self._ids = itertools.count(1)
        self.ended: list[str] = []
        """Ids of the tracks the last :meth:`update` ended."""

    @property
    def tracks(self) -> list[Track]:
        """The live tracks that were seen at the last detection, largest first."""
        return [track for track in self._tracks if track.missed == 0]

    def update(self, faces: list[Face]) -> list[Track]:
        """Match a detection frame's faces to tracks; the tracks of these faces, in order."""
        pairs = sorted(
            (
                (track.box.iou(face.box), t, f)
                for t, track in enumerate(self._tracks)
                for f, face in enumerate(faces)
            ),
            reverse=True,
        )
        matched: dict[int, Track] = {}
        used: set[int] = set()
        for iou, t, f in pairs:
            if iou < self.iou_threshold:
                break
            if t in used or f in matched:
                continue
            track = self._tracks[t]
            track.box, track.detector_score = faces[f].box, faces[f].score
            track.hits += 1
            track.missed = 0
            matched[f], used = track, used | {t}
        self.ended = []
        kept: list[Track] = []
        for t, track in enumerate(self._tracks):
            if t not in used:
                track.missed += 1
                if track.missed > self.max_missed:
                    self.ended.append(track.id)
                    continue
            kept.append(track)
        for f, face in enumerate(faces):
            if f not in matched:
                matched[f] = Track(f"t{next(self._ids)}", face.box, face.score)
                kept.append(matched[f])
        self._tracks = kept
        return [matched[f] for f in range(len(faces))]

    def reset(self) -> list[str]:
        """End every track (the stream went down); their ids."""
        ended = [track.id for track in self._tracks]
        self._tracks = []
        return ended

    def resume(self, boxes: dict[str, Box]) -> None:
        """Carry on from tracks another process followed (track id to last box), as a
        restarted shard does: the next detection continues them or, in time, ends them,
        and new tracks get ids after theirs."""
        self._tracks = [Track(track_id, box, 1.0) for track_id, box in boxes.items()]
        numbers = [int(k[1:]) for k in boxes if k[1:].isdigit()]
        self._ids = itertools.count(max(numbers, default=0) + 1)
