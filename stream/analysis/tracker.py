"""Face tracks between detections: boxes matched by IoU, moved by optical flow between.

The detector runs on every k-th analysed frame. On a detection frame, detections are
matched to tracks greedily by IoU, highest first; a match continues the track, an
unmatched detection starts one, and a track unmatched for more than ``max_missed``
detections ends.

On the frames between, each track's box follows the face (``analysis.track_motion:
flow``): OpenCV's pyramidal Lucas-Kanade follows good features inside the box from the
previous analysed frame to this one, each point is checked by following it back (the
forward-backward error), and the box moves by the points' median shift and scales by
the median ratio of their pairwise distances. The work is done on a small grey patch
around the box (the box scaled to about :data:`PATCH_FACE` pixels wide), so it costs a
fraction of a detection. When the flow fails (too few points survive the check, too
few agree with the median shift, or an implausible scale or position), the track keeps
its last box and stays put until the next detection, and
:attr:`FaceTracker.wants_detection` asks for one on the next frame. Without flow
(``none``) the boxes stay where the last detection put them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import cv2
import numpy as np

from fakewatch.engines.crop import Box
from fakewatch.engines.faces import Face

PATCH_FACE = 96
"""Width in pixels a face box is scaled to (at most) for the flow."""
PATCH_MARGIN = 0.75
"""The patch reaches this many box widths (heights) beyond the box on each side."""
INNER_MARGIN = 0.1
"""Features are taken this fraction of the box's size away from its edges."""
MIN_POINTS = 8
"""Fewer points surviving the checks than this fail the flow."""
FB_MAX = 1.5
"""Largest forward-backward error (patch pixels) a point may have."""
AGREE_PX = 2.0
"""A point agrees with the motion when its shift is this close (patch pixels) to the
median shift..."""
AGREE_SHARE = 0.5
"""...and this share of the points must agree."""
SCALE_RANGE = (0.8, 1.25)
"""Scale changes between two analysed frames outside this range fail the flow."""

LK_WINDOW = (15, 15)
LK_LEVELS = 2
LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)
"""Lucas-Kanade's window (patch pixels), pyramid levels above the patch, and stop rule."""


@dataclass(frozen=True)
class FlowPatch:
    """The grey patch around a box that the next frame's flow starts from."""

    grey: np.ndarray
    region: tuple[int, int, int, int]
    """The frame pixels the patch was cut from: ``x0, y0, x1, y1``."""
    box: Box


@dataclass
class Track:
    """One face followed over time; ``id`` is unique within its stream (``t1``, ``t2``...)."""

    id: str
    box: Box
    detector_score: float
    hits: int = 1
    missed: int = 0
    patch: FlowPatch | None = field(default=None, repr=False)
    """Where the flow starts from on the next frame; None when it is not followed."""


def cut_patch(
    image: np.ndarray, box: Box, region: tuple[int, int, int, int] | None = None
) -> FlowPatch | None:
    """The grey patch of the RGB ``image`` around ``box`` (or over ``region``), scaled so
    the box is at most :data:`PATCH_FACE` pixels wide; None when it lies outside."""
    height, width = image.shape[:2]
    if region is None:
        mx, my = box.width * PATCH_MARGIN, box.height * PATCH_MARGIN
        region = (
            max(0, int(box.x0 - mx)),
            max(0, int(box.y0 - my)),
            min(width, int(np.ceil(box.x1 + mx))),
            min(height, int(np.ceil(box.y1 + my))),
        )
    x0, y0, x1, y1 = region
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    scale = min(1.0, PATCH_FACE / max(box.width, 1.0))
    size = (max(8, round((x1 - x0) * scale)), max(8, round((y1 - y0) * scale)))
    rgb = image[y0:y1, x0:x1]
    if size != (x1 - x0, y1 - y0):
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return FlowPatch(grey, region, box)


def lucas_kanade(
    before: np.ndarray, after: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where ``points`` of the grey image ``before`` are in ``after``, and whether each
    was found."""
    moved, found, _ = cv2.calcOpticalFlowPyrLK(
        before,
        after,
        points,
        np.empty_like(points),
        winSize=LK_WINDOW,
        maxLevel=LK_LEVELS,
        criteria=LK_CRITERIA,
    )
    return np.asarray(moved), np.asarray(found)


def follow_box(patch: FlowPatch, image: np.ndarray) -> Box | None:
    """Where ``patch``'s box moved to in the RGB ``image``; None when the flow fails."""
    current = cut_patch(image, patch.box, patch.region)
    if current is None or current.grey.shape != patch.grey.shape:
        return None
    x0, y0, x1, y1 = patch.region
    sx = patch.grey.shape[1] / (x1 - x0)  # patch pixels per frame pixel
    sy = patch.grey.shape[0] / (y1 - y0)
    box = patch.box
    # points from the inner part of the box: its edges hold background and hair
    mask = np.zeros_like(patch.grey)
    ix, iy = box.width * INNER_MARGIN, box.height * INNER_MARGIN
    bx0, by0 = max(0, int((box.x0 + ix - x0) * sx)), max(0, int((box.y0 + iy - y0) * sy))
    bx1, by1 = int((box.x1 - ix - x0) * sx), int((box.y1 - iy - y0) * sy)
    mask[by0:by1, bx0:bx1] = 255
    start = cv2.goodFeaturesToTrack(
        patch.grey, maxCorners=64, qualityLevel=0.01, minDistance=4, mask=mask
    )
    if start is None or len(start) < MIN_POINTS:
        return None
    moved, found = lucas_kanade(patch.grey, current.grey, start)
    back, found_back = lucas_kanade(current.grey, patch.grey, moved)
    errors = np.linalg.norm((start - back).reshape(-1, 2), axis=1)
    good = (found.ravel() == 1) & (found_back.ravel() == 1) & (errors < FB_MAX)
    if good.sum() >= 2 * MIN_POINTS:  # the better half, as in median flow
        good &= errors <= np.median(errors[good])
    if good.sum() < MIN_POINTS:
        return None
    p0, p1 = start.reshape(-1, 2)[good], moved.reshape(-1, 2)[good]
    shift = np.median(p1 - p0, axis=0)
    # most points must agree on the motion (not so when a hand or the mouth moves)
    agree = np.linalg.norm(p1 - p0 - shift, axis=1) <= AGREE_PX
    if agree.sum() < max(MIN_POINTS, AGREE_SHARE * len(p0)):
        return None
    dx, dy = shift
    i, j = np.triu_indices(len(p0), k=1)
    before = np.linalg.norm(p0[i] - p0[j], axis=1)
    after = np.linalg.norm(p1[i] - p1[j], axis=1)
    apart = before > 1.0
    scale = float(np.median(after[apart] / before[apart])) if apart.any() else 1.0
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        return None
    cx, cy = box.center
    cx, cy = cx + dx / sx, cy + dy / sy
    if not (0 <= cx < image.shape[1] and 0 <= cy < image.shape[0]):
        return None
    half_w, half_h = box.width * scale / 2, box.height * scale / 2
    return Box(float(cx - half_w), float(cy - half_h), float(cx + half_w), float(cy + half_h))


class FaceTracker:
    """IoU tracking of detected faces, moved by optical flow between detections; see
    the module docstring."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 2) -> None:
        if not 0 < iou_threshold < 1:
            raise ValueError(f"iou_threshold must be in (0, 1), got {iou_threshold}")
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._tracks: list[Track] = []
        self._ids = itertools.count(1)
        self.ended: list[str] = []
        """Ids of the tracks the last :meth:`update` ended."""
        self.wants_detection = False
        """A track's flow failed since the last detection: detect on the next frame."""

    @property
    def tracks(self) -> list[Track]:
        """The live tracks that were seen at the last detection, largest first."""
        return [track for track in self._tracks if track.missed == 0]

    def update(self, faces: list[Face], image: np.ndarray | None = None) -> list[Track]:
        """Match a detection frame's faces to tracks; the tracks of these faces, in order.

        With the frame's RGB ``image`` the tracks seen are followed by flow from here
        (:meth:`follow`); without it they stay put until the next detection."""
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
                track.patch = None
                if track.missed > self.max_missed:
                    self.ended.append(track.id)
                    continue
            kept.append(track)
        for f, face in enumerate(faces):
            if f not in matched:
                matched[f] = Track(f"t{next(self._ids)}", face.box, face.score)
                kept.append(matched[f])
        self._tracks = kept
        found = [matched[f] for f in range(len(faces))]
        for track in found:
            track.patch = cut_patch(image, track.box) if image is not None else None
        self.wants_detection = False
        return found

    def follow(self, image: np.ndarray) -> list[Track]:
        """Move each live track's box with the face into the RGB ``image`` (a frame
        between detections); a track whose flow fails keeps its box. The live tracks."""
        tracks = self.tracks
        for track in tracks:
            if track.patch is None:
                continue
            moved = follow_box(track.patch, image)
            if moved is None:
                track.patch = None
                self.wants_detection = True
                continue
            track.box = moved
            track.patch = cut_patch(image, moved)
        return tracks

    def reset(self) -> list[str]:
        """End every track (the stream went down); their ids."""
        ended = [track.id for track in self._tracks]
        self._tracks = []
        self.wants_detection = False
        return ended

    def resume(self, boxes: dict[str, Box]) -> None:
        """Carry on from tracks another process followed (track id to last box), as a
        restarted shard does: the next detection continues them or, in time, ends them,
        and new tracks get ids after theirs."""
        self._tracks = [Track(track_id, box, 1.0) for track_id, box in boxes.items()]
        numbers = [int(k[1:]) for k in boxes if k[1:].isdigit()]
        self._ids = itertools.count(max(numbers, default=0) + 1)
