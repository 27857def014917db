"""Write the checked-in crash cases of ``test_corrupt_media.py`` into ``media_cases/``.

Run from the repository root: ``.venv/bin/python -m tests.reliability.make_media_cases``.
Each case is a small real encoding of the astronaut's face (scikit-image's photograph,
160x120, 12 frames, a keyframe every 4) spoiled in one known way that once made a
decoder or a demuxer misbehave somewhere, or could: truncated headers, missing or
damaged indexes, timestamps that jump by hours, NAL units of garbage. The files are
deterministic for a given libx264 and small (all of them well under 200 KB);
``MANIFEST`` below says what each is, and what a reader must do with it.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

FOLDER = Path(__file__).resolve().parent / "media_cases"
SIZE = (160, 120)
FRAMES = 12
FPS = 24
KEYINT = 4


def face_frames() -> list[np.ndarray]:
    from skimage import data

    from tests.support.media import face_clip

    return face_clip(np.ascontiguousarray(data.astronaut()), FRAMES, SIZE)


def encode(container_format: str, frames: list[np.ndarray], keyint: int = KEYINT) -> bytes:
    """H.264 in ``container_format`` (``mp4``, ``mpegts`` or ``h264``), made with PyAV."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream(
            "libx264",
            rate=FPS,
            options={"g": str(keyint), "keyint_min": str(keyint), "sc_threshold": "0",
                     "crf": "30", "preset": "ultrafast", "threads": "1"},
        )  # fmt: skip
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def _box(data: bytes, kind: bytes) -> tuple[int, int]:
    """Offset and size of the first MP4 box of ``kind`` (searched anywhere)."""
    at = data.index(kind) - 4
    return at, struct.unpack(">I", data[at : at + 4])[0]


def mp4_without_moov(data: bytes) -> bytes:
    at, size = _box(data, b"moov")
    return data[:at] + data[at + size :]


def mp4_truncated_in_moov(data: bytes) -> bytes:
    at, size = _box(data, b"moov")
    return data[: at + size // 2]


def mp4_huge_time_deltas(data: bytes) -> bytes:
    """Every sample lasts about 2**31 ticks: timestamps jump by hours between frames."""
    at, _ = _box(data, b"stts")
    out = bytearray(data)
    entries = struct.unpack(">I", data[at + 12 : at + 16])[0]
    for i in range(entries):
        struct.pack_into(">I", out, at + 16 + 8 * i + 4, 0x7FFFFFF0)
    return bytes(out)


def mp4_sample_sizes_past_the_end(data: bytes) -> bytes:
    at, _ = _box(data, b"stsz")
    out = bytearray(data)
    count = struct.unpack(">I", data[at + 16 : at + 20])[0]
    for i in range(count):
        struct.pack_into(">I", out, at + 20 + 4 * i, 0x0FFFFFFF)
    return bytes(out)


def mp4_box_size_zero_loop(data: bytes) -> bytes:
    """A box that claims size 1 (a 64-bit size follows) with a 64-bit size of 8."""
    at, _ = _box(data, b"trak")
    out = bytearray(data)
    struct.pack_into(">I", out, at, 1)
    return bytes(out[: at + 8]) + struct.pack(">Q", 8) + bytes(out[at + 8 :])


def ts_sync_bytes_broken(data: bytes) -> bytes:
    out = bytearray(data)
    for at in range(0, len(out), 188 * 3):
        out[at] = 0x00
    return bytes(out)


def ts_timestamps_jump(data: bytes) -> bytes:
    """PES timestamps of the second half rewritten hours ahead (33-bit PTS/DTS)."""
    out = bytearray(data)
    half = len(out) // 2
    at = out.find(b"\x00\x00\x01\xe0", half)
    while at >= 0:
        flags = out[at + 7]
        if flags & 0x80:  # a PTS: set its top bits
            out[at + 9] = (out[at + 9] & 0x01) | 0x2E
        at = out.find(b"\x00\x00\x01\xe0", at + 4)
    return bytes(out)


def h264_garbage_nals(data: bytes) -> bytes:
    """Random bytes as NAL units of every type between the real ones."""
    rng = np.random.default_rng(7)
    pieces = data.split(b"\x00\x00\x00\x01")
    out = pieces[0]
    for index, piece in enumerate(pieces[1:]):
        out += b"\x00\x00\x00\x01" + piece
        if index % 2:
            junk = bytes([index % 32]) + rng.integers(0, 256, 300, np.uint8).tobytes()
            out += b"\x00\x00\x00\x01" + junk
    return out


def h264_no_parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS NAL units (types 7, 8) removed: nothing can be decoded."""
    pieces = data.split(b"\x00\x00\x00\x01")
    kept = [p for p in pieces[1:] if p and p[0] & 0x1F not in (7, 8)]
    return b"".join(b"\x00\x00\x00\x01" + p for p in kept)


def garbage(_: bytes) -> bytes:
    return np.random.default_rng(3).integers(0, 256, 20_000, np.uint8).tobytes()


def empty(_: bytes) -> bytes:
    return b""


CASES: dict[str, tuple[str, Callable[[bytes], bytes], str, str]] = {
    # name: (source format, how it is spoiled, what it is, what a reader must do)
    "mp4_without_moov.mp4": ("mp4", mp4_without_moov, "no moov (index) box", "error"),
    "mp4_truncated_in_moov.mp4": ("mp4", mp4_truncated_in_moov, "cut inside moov", "error"),
    "mp4_huge_time_deltas.mp4": (
        "mp4",
        mp4_huge_time_deltas,
        "each frame lasts 2**31 ticks",
        "frames",
    ),
    "mp4_sample_sizes_past_the_end.mp4": (
        "mp4",
        mp4_sample_sizes_past_the_end,
        "sample sizes past the file's end",
        "any",
    ),
    "mp4_box_size_64bit_8.mp4": (
        "mp4",
        mp4_box_size_zero_loop,
        "a box whose 64-bit size is 8",
        "any",
    ),
    "ts_sync_bytes_broken.ts": ("mpegts", ts_sync_bytes_broken, "every 3rd sync byte 0", "any"),
    "ts_timestamps_jump.ts": (
        "mpegts",
        ts_timestamps_jump,
        "PTS of the second half hours ahead",
        "frames",
    ),
    "h264_garbage_nals.h264": ("h264", h264_garbage_nals, "garbage NAL units between", "any"),
    "h264_no_parameter_sets.h264": (
        "h264",
        h264_no_parameter_sets,
        "SPS and PPS removed",
        "error",
    ),
    "garbage.mp4": ("mp4", garbage, "20,000 random bytes", "error"),
    "empty.ts": ("mpegts", empty, "an empty file", "error"),
}


def main() -> None:
    FOLDER.mkdir(exist_ok=True)
    frames = face_frames()
    sources = {fmt: encode(fmt, frames) for fmt in ("mp4", "mpegts", "h264")}
    manifest = {}
    for name, (fmt, spoil, what, expect) in CASES.items():
        data = spoil(sources[fmt])
        (FOLDER / name).write_bytes(data)
        manifest[name] = {"what": what, "expect": expect, "bytes": len(data)}
    (FOLDER / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in FOLDER.iterdir())
    print(f"wrote {len(CASES)} cases to {FOLDER} ({total} bytes)")


if __name__ == "__main__":
    main()
