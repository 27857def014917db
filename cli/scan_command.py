"""``fakewatch scan PATH|URL``: score a video or image file, or a live stream for a while."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def register(commands: Any) -> None:
    scan = commands.add_parser(
        "scan", help="scan a video or image file, or a live URL, for manipulated faces"
    )
    scan.add_argument("path", help="video or image file, or a stream URL (rtsp://, srt://...)")
    scan.add_argument(
        "--seconds", type=float, default=30.0, help="how long to watch a live URL (default 30)"
    )
    scan.add_argument("--config", type=Path, default=None, help="service config for a live URL")
    scan.add_argument("--engine", type=Path, default=None, help="bundle folder (default: shipped)")
    scan.add_argument("--backend", default="auto", help="auto, openvino, onnxruntime, torch, ...")
    scan.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    scan.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "f32", "bf16", "fp16", "int8"],
        help="auto: the fastest with a passing parity check on this machine, else f32",
    )
    scan.add_argument("--threads", type=int, default=None, help="inference threads")
    scan.add_argument(
        "--every", type=int, default=None, help="analyse every n-th frame (default: 5 fps)"
    )
    scan.add_argument("--window", type=int, default=None, help="frames in the sliding vote window")
    scan.add_argument(
        "--max-frames", type=int, default=None, help="stop after this many analysed frames"
    )
    scan.add_argument("--report", type=Path, default=None, help="write the JSON report here")
    scan.add_argument(
        "--save-masks",
        type=Path,
        default=None,
        metavar="DIR",
        help="one PNG per analysed frame: mask probability 0..255 at full resolution",
    )
    scan.add_argument(
        "--annotate",
        type=Path,
        default=None,
        metavar="VIDEO",
        help="write an .mp4 of the analysed frames with mask overlays",
    )
    scan.add_argument("--quiet", action="store_true", help="no progress bar")
    scan.set_defaults(handler=cmd_scan)


def cmd_scan(args: argparse.Namespace) -> int:
    if "://" in args.path:
        return _scan_url(args)
    args.path = Path(args.path)
    return _scan_file(args)


def _scan_url(args: argparse.Namespace) -> int:
    """A live URL through the service's pipeline for ``--seconds``; the same report."""
    import asyncio

    from fakewatch.cli.serve_command import build_config
    from fakewatch.stream.analysis.factory import open_pipeline
    from fakewatch.stream.live_scan import scan_live
    from fakewatch.stream.logs import configure_logging
    from fakewatch.stream.sinks.log import LogSink

    if args.seconds <= 0:
        raise ValueError(f"--seconds must be positive, got {args.seconds}")
    extra: dict[str, Any] = {
        "engine.backend": args.backend,
        "engine.device": args.device,
        "engine.precision": args.precision,
    }
    extra["analysis.adaptive"] = False  # a scan reports on every sampled frame, as for a file
    if args.threads:
        extra["engine.threads"] = args.threads
    if args.window:
        extra["vote.window_frames"] = args.window
        extra["vote.min_frames"] = min(args.window, 5)
    config = build_config(args, extra)
    configure_logging("warning" if args.quiet else config.logging.level)
    pipeline = open_pipeline(config, [LogSink()])
    report = asyncio.run(scan_live(args.path, pipeline, args.seconds))
    _finish(args, report)
    return 0


def _scan_file(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fakewatch.engines.aggregate import DEFAULT_WINDOW
    from fakewatch.engines.analyse import FaceAnalyser, FrameResult
    from fakewatch.engines.bundle import EngineBundle
    from fakewatch.engines.defaults import default_bundle_path
    from fakewatch.engines.faces import default_face_detector
    from fakewatch.engines.media import Frame, is_image, iter_frames, probe_video
    from fakewatch.engines.runtimes import open_engine
    from fakewatch.engines.scan import scan_file, stride_for, suspect_threshold

    path: Path = args.path
    list(iter_frames(path, max_frames=0))  # clear error for a missing or unknown file now
    bundle = EngineBundle.load(args.engine or default_bundle_path())
    engine = open_engine(bundle, args.backend, args.device, args.precision, args.threads)
    video = None if is_image(path) else probe_video(path)
    every = args.every or (stride_for(video.fps) if video else 1)
    if every < 1:
        raise ValueError(f"--every must be at least 1, got {every}")
    analyser = FaceAnalyser(
        engine, default_face_detector(), keep_masks=bool(args.save_masks or args.annotate)
    )
    total = (video.frames // every or None) if video else 1
    if total and args.max_frames:
        total = min(total, args.max_frames)
    fps = video.fps / every if video else 1.0
    writer = _Annotator(args.annotate, max(1.0, fps)) if args.annotate else None
    if args.save_masks:
        args.save_masks.mkdir(parents=True, exist_ok=True)
    progress = tqdm(total=total, unit="frame", disable=args.quiet, desc=path.name)
    threshold, _ = suspect_threshold(analyser)

    def on_frame(frame: Frame, result: FrameResult) -> None:
        progress.update()
        if args.save_masks or writer:
            full = _full_mask(frame, result)
            if args.save_masks:
                _write_png(args.save_masks / f"{frame.index:06d}.png", full)
            if writer:
                writer.write(frame, result, full, threshold)

    try:
        report = scan_file(
            path, analyser, every, args.window or DEFAULT_WINDOW, on_frame, args.max_frames
        )
    finally:
        progress.close()
        if writer:
            writer.close()
    _finish(args, report)
    return 0


def _finish(args: argparse.Namespace, report: Any) -> None:
    """Write the report if asked, and print the one-line verdict."""
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report.model_dump(mode="json"), indent=1) + "\n")
    faces = sum(len(f.faces) for f in report.frames)
    score = "-" if report.score is None else f"{report.score:.3f}"
    note = "" if report.threshold_calibrated else " (uncalibrated)"
    print(
        f"{report.source}: {report.verdict} (score {score}, threshold {report.threshold:.3f}"
        f"{note}; {report.frames_analysed} frames analysed, {faces} faces, "
        f"engine {report.engine})"
    )


def _full_mask(frame: Any, result: Any) -> np.ndarray:
    from fakewatch.engines.crop import paste_mask

    full = np.zeros(frame.image.shape[:2], dtype=np.float32)
    for face in result.faces:
        if face.mask is not None:
            np.maximum(full, paste_mask(face.mask, face.crop_box, frame.image.shape), out=full)
    return full


def _write_png(path: Path, mask: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), np.clip(mask * 255 + 0.5, 0, 255).astype(np.uint8)):
        raise OSError(f"could not write {path}")


class _Annotator:
    """Encodes analysed frames with overlays into an H.264 .mp4 with PyAV."""

    def __init__(self, path: Path, fps: float) -> None:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(path), "w")
        self._stream: Any = None
        self._fps = round(fps)

    def write(self, frame: Any, result: Any, mask: np.ndarray, threshold: float) -> None:
        import av

        from fakewatch.engines.overlay import draw_faces, heatmap_overlay

        image = heatmap_overlay(frame.image, mask)
        image = draw_faces(
            image, [f.box for f in result.faces], [f.score for f in result.faces], threshold
        )
        height, width = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
        if self._stream is None:
            self._stream = self._container.add_stream("libx264", rate=self._fps)
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        video_frame = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(image[:height, :width]), format="rgb24"
        )
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def close(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
