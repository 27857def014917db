"""A cache of face crops and masks, so that later epochs never decode video again.

A shard set is a folder::

    shard-00000.safetensors   crops uint8 (N, S, S, 3), masks uint8 (N, S, S); the
                              header's metadata holds the N samples' JSON descriptions
    shard-00001.safetensors   ...
    index.json                format version, cache key, shards and their sample counts

Every file is written under a temporary name and renamed into place, and ``index.json``
is written last, only when the writer finishes without an error: a folder without it
is an unfinished cache, never a partial one. No pickle: arrays are safetensors, the
rest is JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from fakewatch.engines.spec import ModelSpec

FORMAT_VERSION = 1
INDEX_NAME = "index.json"
_SHARD_PATTERN = "shard-{:05d}.safetensors"
_TEMP_SUFFIX = ".tmp"


class ShardError(ValueError):
    """A shard folder that is missing, unfinished, stale or malformed; the message says which."""


@dataclass(frozen=True)
class SampleMeta:
    """Where a cached sample came from.

    ``kind`` is "real" (the mask is all zero) or "fake"; ``media`` is the video or image
    the crop was cut from and ``frame_index`` its frame (0 for an image).
    """

    kind: Literal["real", "fake"]
    source: str
    identity: str
    media: str
    frame_index: int
    method: str | None = None
    split: str | None = None
    landmarks: list[list[float]] | None = None  # five points in crop pixels, when known
    outline: list[list[float]] | None = None  # the face mesh's hull in crop pixels, when made
    position: float | None = None  # frame index / frame count of a video, for time splits


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary file beside ``path``, then rename it into place."""
    temp = path.with_name(path.name + _TEMP_SUFFIX)
    try:
        write(temp)
        temp.replace(path)
    finally:
        temp.unlink(missing_ok=True)


class ShardWriter:
    """Writes samples into shards of ``shard_size`` in ``folder`` (a context manager).

    Opening a writer removes a previous shard set in ``folder``. Leaving the ``with``
    block normally writes the last shard and ``index.json`` (with ``key``); leaving it
    with an exception writes neither, so the folder does not pass as a finished cache.
    """

    def __init__(self, folder: Path, shard_size: int = 512, key: str | None = None) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        self.folder = Path(folder)
        self.shard_size = shard_size
        self.key = key
        self._crops: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        self._metas: list[SampleMeta] = []
        self._shards: list[dict[str, Any]] = []
        self._size: int | None = None

    def __enter__(self) -> ShardWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        for pattern in (INDEX_NAME, "shard-*.safetensors", f"*{_TEMP_SUFFIX}"):
            for path in self.folder.glob(pattern):
                path.unlink()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            return
        self._flush()
        index = {
            "format_version": FORMAT_VERSION,
            "key": self.key,
            "size": self._size,
            "count": sum(shard["count"] for shard in self._shards),
            "shards": self._shards,
        }
        text = json.dumps(index, indent=1)
        _write_atomically(self.folder / INDEX_NAME, lambda temp: temp.write_text(text))

    def add(self, crop: np.ndarray, mask: np.ndarray | None, meta: SampleMeta) -> None:
        """Queue one sample: an RGB uint8 crop ``(S, S, 3)`` and its uint8 mask ``(S, S)``.

        ``mask`` may be None for a real sample (stored as zeros).
        """
        size = crop.shape[0]
        if crop.dtype != np.uint8 or crop.shape != (size, size, 3):
            raise ValueError(f"crop must be uint8 (S, S, 3), got {crop.dtype} {crop.shape}")
        if self._size is not None and size != self._size:
            raise ValueError(f"crop size {size} differs from the shard set's {self._size}")
        if mask is None:
            mask = np.zeros((size, size), dtype=np.uint8)
        if mask.dtype != np.uint8 or mask.shape != (size, size):
            raise ValueError(f"mask must be uint8 ({size}, {size}), got {mask.dtype} {mask.shape}")
        self._size = size
        self._crops.append(crop)
        self._masks.append(mask)
        self._metas.append(meta)
        if len(self._metas) >= self.shard_size:
            self._flush()

    def _flush(self) -> None:
        from safetensors.numpy import save_file

        if not self._metas:
            return
        name = _SHARD_PATTERN.format(len(self._shards))
        arrays = {"crops": np.stack(self._crops), "masks": np.stack(self._masks)}
        metadata = {
            "format_version": str(FORMAT_VERSION),
            "samples": json.dumps([asdict(meta) for meta in self._metas]),
        }
        _write_atomically(
            self.folder / name, lambda temp: save_file(arrays, str(temp), metadata=metadata)
        )
        self._shards.append({"file": name, "count": len(self._metas)})
        self._crops, self._masks, self._metas = [], [], []


def _read_index(folder: Path) -> dict[str, Any]:
    path = Path(folder) / INDEX_NAME
    if not path.is_file():
        raise ShardError(f"{folder} holds no finished shard set ({INDEX_NAME} is missing)")
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ShardError(f"{path}: cannot read the shard index: {error}") from error
    if not isinstance(index, dict) or index.get("format_version") != FORMAT_VERSION:
        raise ShardError(f"{path}: not a shard index of format version {FORMAT_VERSION}")
    return index


class ShardSet:
    """A finished shard folder: ``len``, ``[i] -> (crop, mask, meta)`` and filtering.

    Sample metadata is read from the shard headers when opened; pixels are read lazily,
    one sample at a time, from memory-mapped shards (handles are reopened after a fork,
    so data-loader workers can share a set).
    """

    def __init__(
        self,
        folder: Path,
        index: Mapping[str, Any],
        metas: list[SampleMeta],
        locations: list[tuple[int, int]],
    ) -> None:
        self.folder = Path(folder)
        self._index = index
        self._metas = metas
        self._locations = locations  # (shard number, row in shard) of each sample
        self._handles: dict[int, Any] = {}
        self._pid = os.getpid()

    @classmethod
    def open(cls, folder: Path, key: str | None = None) -> ShardSet:
        """Open a finished shard set; with ``key``, refuse one built from other inputs."""
        from safetensors import safe_open

        folder = Path(folder)
        index = _read_index(folder)
        if key is not None and index.get("key") != key:
            raise ShardError(
                f"{folder} was built with other inputs or settings (key {index.get('key')} "
                f"!= {key}); rebuild it"
            )
        metas: list[SampleMeta] = []
        locations: list[tuple[int, int]] = []
        for number, shard in enumerate(index["shards"]):
            path = folder / shard["file"]
            if not path.is_file():
                raise ShardError(f"{path} is listed in {INDEX_NAME} but missing")
            with safe_open(str(path), framework="numpy") as handle:
                samples = json.loads((handle.metadata() or {}).get("samples", "[]"))
            if len(samples) != shard["count"]:
                raise ShardError(
                    f"{path} holds {len(samples)} samples, the index says {shard['count']}"
                )
            metas.extend(SampleMeta(**sample) for sample in samples)
            locations.extend((number, row) for row in range(len(samples)))
        return cls(folder, index, metas, locations)

    @staticmethod
    def is_current(folder: Path, key: str) -> bool:
        """Whether ``folder`` holds a finished shard set built with cache key ``key``."""
        try:
            return _read_index(Path(folder)).get("key") == key
        except ShardError:
            return False

    @property
    def key(self) -> str | None:
        key = self._index.get("key")
        return str(key) if key is not None else None

    @property
    def metas(self) -> list[SampleMeta]:
        return list(self._metas)

    def __len__(self) -> int:
        return len(self._metas)

    def __getitem__(self, item: int) -> tuple[np.ndarray, np.ndarray, SampleMeta]:
        if not -len(self) <= item < len(self):
            raise IndexError(f"sample {item} out of range for {len(self)} samples")
        number, row = self._locations[item]
        handle = self._handle(number)
        crop = np.asarray(handle.get_slice("crops")[row])
        mask = np.asarray(handle.get_slice("masks")[row])
        return crop, mask, self._metas[item]

    def _handle(self, number: int) -> Any:
        from safetensors import safe_open

        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if number not in self._handles:
            path = self.folder / self._index["shards"][number]["file"]
            self._handles[number] = safe_open(str(path), framework="numpy")
        return self._handles[number]

    def filter(
        self, predicate: Callable[[SampleMeta], bool] | None = None, **equals: object
    ) -> ShardSet:
        """The samples whose metadata passes ``predicate`` and equals every ``field=value``.

        ``set.filter(kind="fake", split="train")``; ``set.filter(lambda m: m.source != "dfdc")``.
        """
        unknown = set(equals) - set(SampleMeta.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown sample fields {sorted(unknown)}")
        keep = [
            i
            for i, meta in enumerate(self._metas)
            if (predicate is None or predicate(meta))
            and all(getattr(meta, name) == value for name, value in equals.items())
        ]
        subset = ShardSet(
            self.folder,
            self._index,
            [self._metas[i] for i in keep],
            [self._locations[i] for i in keep],
        )
        subset._handles = self._handles
        return subset


def describe_detector(detector: object) -> dict[str, Any]:
    """A face detector's class and public plain settings (what changes its boxes)."""
    plain = (bool, int, float, str, type(None))
    settings = {
        name: value
        for name, value in sorted(vars(detector).items())
        if not name.startswith("_") and isinstance(value, plain)
    }
    return {"class": f"{type(detector).__module__}.{type(detector).__qualname__}", **settings}


def cache_key(
    media: Iterable[Path],
    spec: ModelSpec,
    config: BaseModel | Mapping[str, Any] | None = None,
    detector: object | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """sha256 of everything that determines a shard set's content.

    That is: each media file's resolved path, size and modification time, the crop size
    and margin of ``spec``, the mask ``config``, the ``detector``'s settings (see
    :func:`describe_detector`), anything in ``extra`` (pass the frame stride and
    sampling choices there) and the shard format version. A cache whose key differs
    was built from other inputs and must be rebuilt.
    """
    files = []
    for path in sorted({Path(p).resolve() for p in media}):
        stat = path.stat()
        files.append([str(path), stat.st_size, stat.st_mtime_ns])
    if isinstance(config, BaseModel):
        config = config.model_dump(mode="json")
    content = {
        "format_version": FORMAT_VERSION,
        "media": files,
        "input_size": spec.input_size,
        "crop_margin": spec.crop_margin,
        "config": config,
        "detector": describe_detector(detector) if detector is not None else None,
        "extra": dict(extra) if extra is not None else None,
    }
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
