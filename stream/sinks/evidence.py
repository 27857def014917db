"""Evidence of each alert on disk: what a person checks before acting on it.

For every ``deepfake.suspected`` event the store writes, in a folder named by the
event's id (one alert per face of a stream, each with its own face's frame, so two
faces' alerts never share a folder):

- ``frame.jpg``: the frame that scored highest in the deciding window, with the face's
  mask pasted back as a heatmap and the face box with its score;
- ``crop.jpg`` and ``mask.png``: the face crop the model saw and its mask (0..255);
- ``event.json``: the event as the API and webhooks describe it;
- ``review.json``, once a person has reviewed the alert: their verdict
  (``confirmed`` or ``false_positive``), a note and when (:meth:`EvidenceStore.review`).
- ``clip.mp4`` and ``clip.json``, when clips are on: the video from ``clip_before_s``
  before the alert to ``clip_after_s`` after it, the alerting face's mask drawn on each
  frame (:mod:`~fakewatch.stream.sinks.clips`), and the capture time of each of its
  frames. They come ``clip_after_s`` (and the encoding) after the rest; a clip still
  being recorded when the service stops is written with the frames it has.

Files are written to a temporary name and renamed, so a reader never sees half a
picture, and the store outlives the process: evidence of an older alert is still
served after a restart (:func:`evidence_links` says where). Retention keeps at most
``max_alerts`` folders, none older than ``max_age_s``, and at most ``max_bytes`` in all,
oldest removed first; a clip goes with its alert.

:meth:`EvidenceStore.links` are where the files are served: plain API paths (behind the
token), or signed and expiring ones (:mod:`~fakewatch.stream.sinks.links`) for webhook
receivers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fakewatch.engines.crop import paste_mask
from fakewatch.engines.overlay import draw_faces, heatmap_overlay
from fakewatch.stream.analysis.events import Event, EventType
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log
from fakewatch.stream.sinks.clips import ClipRecorder, encode_clip
from fakewatch.stream.sinks.links import LinkSigner, load_link_key

logger = logging.getLogger(f"{LOGGER_NAME}.evidence")

FILES = {
    "frame.jpg": "image/jpeg",
    "crop.jpg": "image/jpeg",
    "mask.png": "image/png",
    "clip.mp4": "video/mp4",
}
PICTURES = ("frame.jpg", "crop.jpg", "mask.png")
CLIP, CLIP_TIMES = "clip.mp4", "clip.json"
REVIEW = "review.json"
EVENT_ID = re.compile(r"^[0-9a-f]{32}$")
JPEG_QUALITY = 90
DEFAULT_LINK_TTL_S = 7 * 86400.0


def evidence_path(event_id: str, name: str) -> str:
    """The API path of one evidence file."""
    return f"/api/evidence/{event_id}/{name}"


def evidence_links(
    base_url: str, event_id: str, signer: LinkSigner | None = None, clip: bool = False
) -> dict[str, str]:
    """Where the API serves an alert's evidence files, under ``base_url``: by name
    (``frame``, ``crop``, ``mask``, and ``clip`` if ``clip``), signed by ``signer`` if
    given."""
    names = [*PICTURES, *([CLIP] if clip else [])]
    paths = {name.split(".")[0]: evidence_path(event_id, name) for name in names}
    if signer is not None:
        paths = {key: signer.sign(path) for key, path in paths.items()}
    return {key: f"{base_url}{path}" for key, path in paths.items()}


class EvidenceStore:
    """Writes and serves alert evidence under ``folder``; an event sink. With ``clips``
    each alert also gets its clip; ``signer`` signs the links given to webhook receivers
    (by default with the key kept in ``folder``)."""

    def __init__(
        self,
        folder: Path,
        max_alerts: int = 1000,
        max_age_s: float = 30 * 86400,
        max_bytes: int = 2 * 1024**3,
        clips: ClipRecorder | None = None,
        signer: LinkSigner | None = None,
    ) -> None:
        self.folder = folder
        self.max_alerts, self.max_age_s, self.max_bytes = max_alerts, max_age_s, max_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self.clips = clips
        self.signer = signer or LinkSigner(load_link_key(folder), DEFAULT_LINK_TTL_S)
        self._lock = asyncio.Lock()
        self._pruning: asyncio.Task[None] | None = None
        self._recording: set[asyncio.Task[None]] = set()

    async def emit(self, event: Event) -> None:
        """Write the alert's evidence; the retention limits apply afterwards, in the
        background, so that the sinks after this one (webhooks) are not kept waiting
        while a full store is listed (about 80 ms for 1,000 alerts)."""
        if event.type is not EventType.SUSPECTED or event.evidence is None:
            return
        async with self._lock:
            await asyncio.to_thread(self._write, event)
        if self.clips is not None:
            task = asyncio.create_task(self._record_clip(event), name="evidence clip")
            self._recording.add(task)
            task.add_done_callback(self._recording.discard)
        self._prune_soon()

    def _prune_soon(self) -> None:
        """Apply the retention limits in the background, unless a pass is running."""
        if self._pruning is None or self._pruning.done():
            self._pruning = asyncio.create_task(self._prune_now(), name="evidence prune")

    def links(self, base_url: str, event_id: str, signed: bool = False) -> dict[str, str]:
        """Where the API serves an alert's evidence (signed links if ``signed``); the clip
        is among them when clips are on."""
        signer = self.signer if signed else None
        return evidence_links(base_url, event_id, signer, clip=self.clips is not None)

    async def close(self) -> None:
        """End the clips being recorded (with the frames they have), write them, and wait
        for a retention pass still running."""
        if self.clips is not None:
            await self.clips.close()
        if self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)
        if self._pruning is not None:
            await self._pruning

    async def _record_clip(self, event: Event) -> None:
        assert self.clips is not None and event.evidence is not None
        frames = await self.clips.record(event.stream_id, event.time)
        if not frames:
            return
        threshold = event.window.enter_threshold if event.window else 0.5
        staged = self.folder / f".{event.id}.{CLIP}"
        try:
            times = await asyncio.to_thread(
                encode_clip, frames, event.evidence.track, threshold, staged
            )
            async with self._lock:
                await asyncio.to_thread(self._place_clip, event, staged, times)
            self._prune_soon()  # the clip counts towards max_bytes
        except Exception as error:  # the rest of the evidence stays
            log(
                logger,
                logging.ERROR,
                "evidence.clip_error",
                event_id=event.id,
                error=describe_error(error),
            )
        finally:
            staged.unlink(missing_ok=True)

    def _place_clip(self, event: Event, staged: Path, times: list[float]) -> None:
        target = self.folder / event.id
        if not self.has(event.id):
            return  # removed by retention meanwhile
        details = {"alert_time": round(event.time, 3), "times": [round(t, 3) for t in times]}
        partial = target / f".{CLIP_TIMES}.partial"
        partial.write_text(json.dumps(details))
        partial.replace(target / CLIP_TIMES)
        staged.replace(target / CLIP)
        log(
            logger,
            logging.INFO,
            "evidence.clip_stored",
            event_id=event.id,
            frames=len(times),
            seconds=round(times[-1] - times[0], 3),
        )

    def clip_times(self, event_id: str) -> dict[str, Any] | None:
        """The alert's time and each clip frame's capture time, once the clip is written."""
        path = self.folder / event_id / CLIP_TIMES
        if not EVENT_ID.match(event_id) or not path.is_file():
            return None
        return dict(json.loads(path.read_text()))

    async def _prune_now(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self.prune)

    def has(self, event_id: str) -> bool:
        return bool(EVENT_ID.match(event_id)) and (self.folder / event_id / "event.json").is_file()

    def path(self, event_id: str, name: str) -> Path | None:
        """The file ``name`` of an alert's evidence, ``None`` if there is none."""
        if not EVENT_ID.match(event_id) or name not in FILES:
            return None
        path = self.folder / event_id / name
        return path if path.is_file() else None

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest alerts with evidence, newest first (their ``event.json``)."""
        found = []
        for folder in self._folders()[::-1][:limit]:
            try:
                found.append(json.loads((folder / "event.json").read_text()))
            except (OSError, ValueError):
                continue
        return found

    def event(self, event_id: str) -> dict[str, Any] | None:
        """An alert as its ``event.json`` describes it, ``None`` if there is none."""
        if not self.has(event_id):
            return None
        try:
            found = json.loads((self.folder / event_id / "event.json").read_text())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def review(self, event_id: str) -> dict[str, Any] | None:
        """A person's verdict on an alert (``review.json``), ``None`` if none yet."""
        if not EVENT_ID.match(event_id):
            return None
        try:
            found = json.loads((self.folder / event_id / REVIEW).read_text())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def save_review(self, event_id: str, review: dict[str, Any]) -> bool:
        """Keep ``review`` beside the alert's evidence, replacing an earlier one
        atomically; False if there is no such alert."""
        if not self.has(event_id):
            return False
        target = self.folder / event_id / REVIEW
        staging = target.with_name(f".{REVIEW}.partial")
        staging.write_text(json.dumps(review, indent=1))
        staging.replace(target)
        log(
            logger,
            logging.INFO,
            "evidence.reviewed",
            event_id=event_id,
            verdict=review.get("verdict"),
        )
        return True

    def prune(self, now: float | None = None) -> int:
        """Apply the retention limits; the number of alerts removed."""
        now = time.time() if now is None else now
        folders = self._folders()
        sizes = [sum(f.stat().st_size for f in folder.iterdir()) for folder in folders]
        total = sum(sizes)
        removed = 0
        for folder, size in zip(folders, sizes, strict=True):
            too_many = len(folders) - removed > self.max_alerts
            too_old = now - folder.stat().st_mtime > self.max_age_s
            if not (too_many or too_old or total > self.max_bytes):
                break
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
            removed += 1
        return removed

    def _folders(self) -> list[Path]:
        """Complete evidence folders, oldest first."""
        folders = [p for p in self.folder.iterdir() if self.has(p.name)]
        return sorted(folders, key=lambda p: (p.stat().st_mtime, p.name))

    def _write(self, event: Event) -> None:
        evidence = event.evidence
        assert evidence is not None
        target = self.folder / event.id
        staging = self.folder / f".{event.id}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        frame = evidence.frame
        full_mask = paste_mask(evidence.mask, evidence.crop_box, frame.shape)
        picture = heatmap_overlay(frame, full_mask)
        threshold = event.window.enter_threshold if event.window else 0.5
        picture = draw_faces(picture, [evidence.face_box], [evidence.score], threshold)
        _write_image(staging / "frame.jpg", picture)
        _write_image(staging / "crop.jpg", evidence.crop)
        mask = np.clip(evidence.mask * 255 + 0.5, 0, 255).astype(np.uint8)
        _write_image(staging / "mask.png", mask)
        (staging / "event.json").write_text(json.dumps(event.to_dict(), indent=1))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        log(
            logger,
            logging.INFO,
            "evidence.stored",
            event_id=event.id,
            stream=event.stream_name,
            track=event.track or "-",
        )


def _write_image(path: Path, image: np.ndarray) -> None:
    data = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix == ".jpg" else []
    ok, encoded = cv2.imencode(path.suffix, data, params)
    if not ok:
        raise OSError(f"could not encode {path.name}")
    path.write_bytes(encoded.tobytes())
