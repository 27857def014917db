"""A pipeline built from a configuration: the bundle, its engine, the face detector and
the vote thresholds from the bundle's calibration."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.defaults import default_bundle_path, installed_version
from fakewatch.engines.faces import FaceDetector, RetinaFaceDetector
from fakewatch.engines.runtimes import open_engine
from fakewatch.stream.analysis.events import EventSink
from fakewatch.stream.analysis.pipeline import Pipeline
from fakewatch.stream.analysis.saved_settings import SavedSettings
from fakewatch.stream.analysis.segmenter import LocalSegmenter, Segmenter
from fakewatch.stream.analysis.vote import UNCALIBRATED, Thresholds
from fakewatch.stream.config import MAX_FACES, ServiceConfig, VoteConfig
from fakewatch.stream.logs import LOGGER_NAME, log
from fakewatch.stream.metrics import PipelineMetrics

logger = logging.getLogger(f"{LOGGER_NAME}.service")

SegmenterWrapper = Callable[[Segmenter], Segmenter]
"""Wraps every segmenter a pipeline opens (at start and at each engine restart)."""
DetectorWrapper = Callable[[FaceDetector], FaceDetector]
"""Wraps every face detector a pipeline opens."""


def vote_thresholds(bundle: EngineBundle, vote: VoteConfig) -> Thresholds:
    """Enter and exit thresholds: the configured ones, else the bundle's calibration
    (``suspect`` and ``clear``), else 0.5 and 0.45 marked uncalibrated; and the
    bundle's per-stream baseline, unless ``vote.use_baseline`` is off."""
    calibrated = bundle.manifest.thresholds
    suspect, clear = calibrated.get("suspect"), calibrated.get("clear")
    enter = vote.enter_threshold or (suspect.value if suspect else UNCALIBRATED[0])
    exit_ = vote.exit_threshold or (clear.value if clear else min(enter, UNCALIBRATED[1]))
    return Thresholds(
        enter=enter,
        exit=min(exit_, enter),
        calibrated=vote.enter_threshold is not None or suspect is not None,
        baseline=bundle.manifest.baseline if vote.use_baseline else None,
    )


def open_local_segmenter(config: ServiceConfig, bundle: EngineBundle) -> LocalSegmenter:
    """The bundle's engine in this process, with the configured backend and precision."""
    engine = open_engine(
        bundle,
        config.engine.backend,
        config.engine.device,
        config.engine.precision,
        threads=config.engine.threads,
    )
    return LocalSegmenter(engine)


def open_pipeline(
    config: ServiceConfig,
    sinks: list[EventSink] | None = None,
    metrics: PipelineMetrics | None = None,
    *,
    wrap_segmenter: SegmenterWrapper | None = None,
    wrap_detector: DetectorWrapper | None = None,
    remote_segmenter: Callable[[], Segmenter] | None = None,
    saved_settings: SavedSettings | None = None,
) -> Pipeline:
    """A pipeline on the configured engine (the shipped one by default), handing its
    events to ``sinks`` in order; not started.

    The pipeline gets factories that open the engine and the detector again, for its
    restarts after a hang; ``wrap_segmenter`` and ``wrap_detector`` wrap every one
    opened (fault injection in tests, instrumentation). With ``remote_segmenter`` the
    crops go to the segmenter it opens (a cluster's shared one) instead of a local engine;
    the bundle still gives the crop rule and the thresholds. ``saved_settings`` keeps the
    settings streams were given through the API (in memory without it)."""
    bundle = EngineBundle.load(config.engine.bundle or default_bundle_path())
    analysis, limits = config.analysis, config.limits

    def open_unwrapped() -> Segmenter:
        if remote_segmenter is not None:
            return remote_segmenter()
        return open_local_segmenter(config, bundle)

    def wrap(segmenter: Segmenter) -> Segmenter:
        return wrap_segmenter(segmenter) if wrap_segmenter is not None else segmenter

    def open_segmenter() -> Segmenter:
        return wrap(open_unwrapped())

    def open_detector() -> FaceDetector:
        detector: FaceDetector = RetinaFaceDetector(
            score_threshold=analysis.detector_threshold,
            detect_size=analysis.detect_size,
            min_face=limits.min_face,
            max_faces=MAX_FACES,  # each stream keeps its own max_faces of these
        )
        return wrap_detector(detector) if wrap_detector is not None else detector

    first = open_unwrapped()
    pipeline = Pipeline(
        config,
        wrap(first),
        open_detector(),
        bundle.spec.input_size,
        bundle.spec.crop_margin,
        vote_thresholds(bundle, config.vote),
        sinks=sinks,
        bundle_baseline=bundle.manifest.baseline,
        saved_settings=saved_settings,
        metrics=metrics,
        segmenter_factory=open_segmenter,
        detector_factory=open_detector,
    )
    label, backend, precision, reason = ("remote", "remote", "remote", "")
    if isinstance(first, LocalSegmenter):
        info = first.engine.info
        label, backend, precision, reason = info.label, info.backend, info.precision, info.reason
    pipeline.metrics.info.info(
        {
            "version": installed_version(),
            "engine": label,
            "backend": backend,
            "precision": precision,
            "precision_reason": reason or "asked for in engine.precision",
            "model": bundle.manifest.name,
            "model_sha256": bundle.model_sha256[:16],
        }
    )
    log(
        logger,
        logging.INFO,
        "engine.opened",
        engine=label,
        precision_reason=reason,
        bundle=str(bundle.folder),
    )
    return pipeline
