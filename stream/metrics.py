"""Prometheus metrics of one pipeline, in its own registry.

Names follow Prometheus conventions: the ``fakewatch_`` prefix, base units
(``_seconds``), ``_total`` on counters. The ``stream`` label is the stream's name, which
the API bounds (at most ``limits.max_streams`` at once, names validated); the series of
a removed stream are deleted.
"""

from __future__ import annotations

import contextlib

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
WEBHOOK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PipelineMetrics:
    """Every series the service exports; one instance per pipeline."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # CPU, memory, open files and Python's own figures of this process
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        r = self.registry
        self.info = Info(
            "fakewatch_build",
            "Version, engine, model and the engine's precision (with why auto picked it) "
            "the service runs",
            registry=r,
        )
        self.ready = Gauge("fakewatch_ready", "1 once the engine is warmed up", registry=r)
        self.streams = Gauge("fakewatch_streams", "Streams configured", registry=r)
        self.stream_up = Gauge(
            "fakewatch_stream_up", "1 while the stream delivers frames", ["stream"], registry=r
        )
        self.frames_received = Counter(
            "fakewatch_frames_received_total",
            "Frames decoded from the source",
            ["stream"],
            registry=r,
        )
        self.frames_analysed = Counter(
            "fakewatch_frames_analysed_total",
            "Frames run through the pipeline",
            ["stream"],
            registry=r,
        )
        self.frames_dropped = Counter(
            "fakewatch_frames_dropped_total",
            "Frames or crops not analysed, by reason",
            ["stream", "reason"],
            registry=r,
        )
        self.faces = Counter(
            "fakewatch_faces_analysed_total", "Face crops segmented", ["stream"], registry=r
        )
        self.faces_detected = Counter(
            "fakewatch_faces_detected_total",
            "Faces the detector found (on detection frames)",
            ["stream"],
            registry=r,
        )
        self.reconnects = Counter(
            "fakewatch_stream_reconnects_total", "Source reconnections", ["stream"], registry=r
        )
        self.latency = Histogram(
            "fakewatch_end_to_end_latency_seconds",
            "Capture of a frame to its decision",
            ["stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "fakewatch_stage_seconds",
            "Seconds per analysed frame in each stage: decode (and RGB conversion), detect "
            "or track, infer (batch wait and engine), vote (decision and event sinks)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "fakewatch_inference_batch_size",
            "Crops per engine call",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "fakewatch_inference_seconds",
            "Seconds per engine call",
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.queue = Gauge(
            "fakewatch_inference_queue_crops", "Crops waiting for inference", registry=r
        )
        self.score = Gauge(
            "fakewatch_window_score", "Current sliding-window score", ["stream"], registry=r
        )
        self.threshold = Gauge(
            "fakewatch_vote_threshold",
            "Window score that raises (enter) and clears (exit) an alert",
            ["kind"],
            registry=r,
        )
        self.alerting = Gauge(
            "fakewatch_alert_active",
            "1 while any face of the stream is suspected",
            ["stream"],
            registry=r,
        )
        self.face_alerts = Gauge(
            "fakewatch_face_alerts_open",
            "Faces of the stream with an alert open (one alert per face track)",
            ["stream"],
            registry=r,
        )
        self.restarts = Counter(
            "fakewatch_engine_restarts_total",
            "Restarts of the inference engine or the face detector after a call hung or "
            "calls kept failing",
            ["component"],
            registry=r,
        )
        for component in ("engine", "detector"):  # exported at 0 from the start
            self.restarts.labels(component)
        self.events = Counter(
            "fakewatch_events_total", "Events emitted, by type", ["type"], registry=r
        )
        # the endpoint label is a configured endpoint's name: bounded by the configuration
        self.webhook_deliveries = Counter(
            "fakewatch_webhook_deliveries_total",
            "Webhook deliveries by outcome: delivered; retried (an attempt failed, another is "
            "due); failed (given up); disabled (the endpoint answered 410 Gone or is disabled); "
            "dropped (the outbox was full)",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.webhook_pending = Gauge(
            "fakewatch_webhook_outbox_pending",
            "Webhook deliveries waiting in the outbox",
            ["endpoint"],
            registry=r,
        )
        self.webhook_seconds = Histogram(
            "fakewatch_webhook_delivery_seconds",
            "Seconds per webhook request, whatever its outcome",
            ["endpoint"],
            buckets=WEBHOOK_BUCKETS,
            registry=r,
        )

    def forget(self, stream: str) -> None:
        """Delete a removed stream's series."""
        for metric in (
            self.stream_up,
            self.frames_received,
            self.frames_analysed,
            self.faces,
            self.faces_detected,
            self.reconnects,
            self.latency,
            self.score,
            self.alerting,
            self.face_alerts,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(stream)
        for labels in list(self.frames_dropped._metrics):
            if labels[0] == stream:
                self.frames_dropped.remove(*labels)
