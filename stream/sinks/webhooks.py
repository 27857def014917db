"""Events as signed webhooks (Standard Webhooks), delivered through a durable outbox.

:class:`WebhookSink` is an event sink: for every endpoint whose ``events`` filter takes
the event it writes one row to the :class:`~fakewatch.stream.sinks.outbox.Outbox` and
wakes the delivery worker; it never waits on the network.
:class:`~fakewatch.stream.sinks.delivery.WebhookDelivery` runs one asyncio task per
endpoint that POSTs due rows, at most ``max_in_flight`` at once.

Each request carries the Standard Webhooks headers: ``webhook-id`` (``msg_<event id>``,
the same on every attempt, for deduplication), ``webhook-timestamp`` (this attempt's
time, in seconds) and ``webhook-signature``, one ``v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`` per live secret, separated by spaces (rotation). The body:

    {"type": "deepfake.suspected", "timestamp": "2026-11-26T14:03:12.345Z",
     "data": {<the event as the API shows it>, "evidence_urls": {"frame": ..., ...}}}

A decision is one face's: ``data.track`` names the face track and ``data.box`` where the
face was (``[x0, y0, x1, y1]`` in frame pixels), so a receiver tells apart the alerts of
several faces of one stream, each opened by its ``deepfake.suspected`` and closed by the
``deepfake.cleared`` of the same stream and track.

``evidence_urls`` (absolute, from ``server.public_url`` or the address the API is bound
to) come with suspected events whose evidence was stored: ``frame``, ``crop``, ``mask``
and, when clips are on, ``clip`` (written ``evidence.clip_after_s`` after the alert; 404
until then). They are signed and expire after ``evidence.link_ttl_s``
(:mod:`~fakewatch.stream.sinks.links`), so a receiver opens them without the API token.

Outcomes: any 2xx is delivered; ``410 Gone`` disables the endpoint (kept across restarts
until its URL changes); anything else (3xx included: redirects are not followed), a timeout or a
connection error is retried after an exponential backoff with jitter, or after the
``Retry-After`` the receiver asked for (capped at ``max_backoff_s``), until
``max_attempts`` or ``max_age_s``. Deliveries are not ordered (the body's ``timestamp``
says when the event happened). Every connection goes to an address checked when it is
resolved: loopback, private, link-local, multicast and reserved addresses are refused
unless the endpoint sets ``allow_private``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time

from fakewatch.stream.analysis.events import Event, EventType
from fakewatch.stream.config import WebhooksConfig
from fakewatch.stream.logs import LOGGER_NAME, log
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.sinks.delivery import WebhookDelivery
from fakewatch.stream.sinks.evidence import EvidenceStore
from fakewatch.stream.sinks.outbox import Delivery, Outbox
from fakewatch.stream.sinks.signing import iso_time, webhook_id

logger = logging.getLogger(f"{LOGGER_NAME}.webhooks")


class WebhookSink:
    """Turns events into outbox rows, one per endpoint that takes the event; an event
    sink. :meth:`start` and :meth:`close` run the delivery worker with the service."""

    def __init__(
        self,
        settings: WebhooksConfig,
        evidence: EvidenceStore,
        metrics: PipelineMetrics,
        rng: random.Random | None = None,
    ) -> None:
        self.settings, self.evidence, self.metrics = settings, evidence, metrics
        self.outbox = Outbox(
            settings.outbox,
            max_pending=settings.max_pending,
            max_age_s=settings.max_age_s,
            max_attempts=settings.max_attempts,
            history_s=settings.history_hours * 3600,
        )
        self.delivery = WebhookDelivery(settings, self.outbox, metrics, rng)
        self.base_url: str | None = None

    def set_base_url(self, url: str) -> None:
        """Where the API answers (``server.public_url`` or the bound address), for the
        evidence links; known once the server is bound."""
        self.base_url = url.rstrip("/")

    async def start(self) -> None:
        await self.delivery.start()

    async def close(self, grace_s: float = 0.0) -> None:
        """Stop delivering; see :meth:`WebhookDelivery.close`. Undelivered rows stay
        pending in the outbox."""
        await self.delivery.close(grace_s)

    async def body(self, event: Event) -> str:
        """The JSON body every endpoint receives for ``event``."""
        data = event.to_dict()
        if (
            event.type is EventType.SUSPECTED
            and self.base_url
            and await asyncio.to_thread(self.evidence.has, event.id)
        ):
            data["evidence_urls"] = self.evidence.links(self.base_url, event.id, signed=True)
        document = {"type": str(event.type), "timestamp": iso_time(event.time), "data": data}
        return json.dumps(document, separators=(",", ":"))

    async def emit(self, event: Event) -> None:
        kind = str(event.type)
        targets = [e.name for e in self.settings.endpoints if kind in e.events]
        live = [name for name in targets if self.delivery.accepts(name)]
        for name in set(targets) - set(live):
            self.metrics.webhook_deliveries.labels(name, "disabled").inc()
        if not live:
            return
        body, now = await self.body(event), time.time()
        message_id = webhook_id(event)
        added = await self.outbox.add(Delivery(message_id, name, kind, body, now) for name in live)
        for name, result in added.items():
            self.metrics.webhook_pending.labels(name).set(result.pending)
            if result.dropped:
                self.metrics.webhook_deliveries.labels(name, "dropped").inc(result.dropped)
                log(
                    logger,
                    logging.WARNING,
                    "webhook.outbox_full",
                    endpoint=name,
                    dropped=result.dropped,
                    max_pending=self.settings.max_pending,
                    detail="the oldest undelivered deliveries were dropped",
                )
        for name in live:
            self.delivery.wake(name)
