"""Evidence of each alert on disk: what a person checks before acting on it.

For every ``deepfake.suspected`` event the store writes, in a folder named by the
event's id (one alert per face of a stream, each with its own face's frame, so two
faces' alerts never share a folder):

- ``frame.jpg``: the frame that scored highest in the deciding window, with the face's
  mask pasted back as a heatmap and the face box with its score;
- ``crop.jpg`` and ``mask.png``: the face crop the model saw and its mask (0..255);
- ``event.json``: the event as the API and webhooks describe it.

Files are written to a temporary name and renamed, so a reader never sees half a
picture, and the store outlives the process: evidence of an older alert is still
served after a restart (:func:`evidence_links` says where). Retention keeps at most
``max_alerts`` folders, none older than ``max_age_s``, and at most ``max_bytes`` in all,
oldest removed first.
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
from fakewatch.stream.logs import LOGGER_NAME, log

logger = logging.getLogger(f"{LOGGER_NAME}.evidence")

FILES = {"frame.jpg": "image/jpeg", "crop.jpg": "image/jpeg", "mask.png": "image/png"}
EVENT_ID = re.compile(r"^[0-9a-f]{32}$")
JPEG_QUALITY = 90


def evidence_links(base_url: str, event_id: str) -> dict[str, str]:
    """Where the API serves an alert's evidence files, under ``base_url``."""
    return {name.split(".")[0]: f"{base_url}/api/evidence/{event_id}/{name}" for name in FILES}


class EvidenceStore:
    """Writes and serves alert evidence under ``folder``; an event sink."""

    def __init__(
        self,
        folder: Path,
        max_alerts: int = 1000,
        max_age_s: float = 30 * 86400,
        max_bytes: int = 2 * 1024**3,
    ) -> None:
        self.folder = folder
        self.max_alerts, self.max_age_s, self.max_bytes = max_alerts, max_age_s, max_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = asyncio.Lock()
        self._pruning: asyncio.Task[None] | None = None

    async def emit(self, event: Event) -> None:
        """Write the alert's evidence; the retention limits apply afterwards, in the
        background, so that the sinks after this one (webhooks) are not kept waiting
        while a full store is listed (about 80 ms for 1,000 alerts)."""
        if event.type is not EventType.SUSPECTED or event.evidence is None:
            return
        async with self._lock:
            await asyncio.to_thread(self._write, event)
        if self._pruning is None or self._pruning.done():
            self._pruning = asyncio.create_task(self._prune_now(), name="evidence prune")

    async def close(self) -> None:
        """Wait for a retention pass still running."""
        if self._pruning is not None:
            await self._pruning

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
