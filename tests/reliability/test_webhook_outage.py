"""Webhooks through an outage: 1,000 events, every one delivered, once each after dedup.

The service is the real one (``serving``): its WebhookSink writes each event to the
SQLite outbox and its delivery worker POSTs them to a real receiver on a loopback port
(``tests.support.webhooks.Receiver``), which verifies every request with the
``standardwebhooks`` reference library. The receiver answers 500 for a while, then
200; a second endpoint answers 410 Gone and must be disabled after its first answer.
Backoffs are shortened through the configuration so the outage drains in seconds.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from fakewatch.stream.analysis.events import EventType
from fakewatch.stream.config import webhook_secret_key
from fakewatch.stream.sinks.outbox import Status
from fakewatch.stream.sinks.signing import sign
from tests.support.prometheus import metric
from tests.support.service import serving
from tests.support.webhooks import (
    Receiver,
    Reply,
    Request,
    emit,
    endpoint,
    health,
    hooks,
    new_secret,
    outcomes,
    run,
    wait_rows,
)

EVENTS = 1000
OUTAGE_S = 2.0


@pytest.mark.reliability
def test_a_thousand_events_survive_an_outage_and_410_disables_its_endpoint() -> None:
    async def check(receiver: Receiver) -> None:
        receiver.fixed["/hook"] = Reply(500)  # the outage
        receiver.fixed["/gone"] = Reply(410)
        settings = hooks(
            endpoint(receiver, "ops", "/hook"),
            endpoint(receiver, "gone", "/gone"),
            **{
                "webhooks.initial_backoff_s": 0.05,
                "webhooks.max_backoff_s": 0.3,
                "webhooks.max_in_flight": 16,
                "webhooks.max_attempts": 1000,
            },
        )
        async with serving(**settings) as service:
            kinds = [EventType.STREAM_UP, EventType.STREAM_DOWN]
            events = [health(kinds[i % 2], stream=f"cam{i % 7}") for i in range(EVENTS)]
            started = time.monotonic()
            await emit(service, *events)
            emitted_s = time.monotonic() - started
            await asyncio.sleep(max(0.0, OUTAGE_S - emitted_s))
            receiver.fixed["/hook"] = Reply(200)  # the receiver is back
            recovered = time.monotonic()
            ids = {f"msg_{e.id}" for e in events}
            await receiver.wait(lambda r: {q.id for q in r.delivered("/hook")} >= ids, timeout=60)
            drain_s = time.monotonic() - recovered

            delivered = receiver.delivered("/hook")
            per_id = Counter(r.id for r in delivered)
            unique = len(per_id)
            duplicates = len(delivered) - unique
            assert set(per_id) == ids and unique == EVENTS
            assert duplicates == 0, per_id.most_common(3)  # nothing timed out: no resend
            hook_requests = [r for r in receiver.requests if r.path == "/hook"]
            assert all(r.verified == (True, True) for r in hook_requests)
            for message_id, attempts in _attempts(hook_requests).items():
                assert len({r.body for r in attempts}) == 1, message_id  # the same body

            rows = await wait_rows(
                service,
                lambda rows: all(r.status != Status.PENDING for r in rows if r.endpoint == "ops"),
            )
            ops_rows = [r for r in rows if r.endpoint == "ops"]
            assert {r.status for r in ops_rows} == {Status.DELIVERED}
            assert sum(r.attempts for r in ops_rows) == len(hook_requests)

            # 410: the first answer disables the endpoint; the rest are never sent
            gone_requests = [r for r in receiver.requests if r.path == "/gone"]
            gone_rows = [r for r in rows if r.endpoint == "gone"]
            assert 1 <= len(gone_requests) <= 16  # at most the attempts already in flight
            assert {r.status for r in gone_rows} == {Status.DISABLED}
            text = await service.metrics_text()
            ops = outcomes(text, "ops")
            assert ops["delivered"] == EVENTS and ops["failed"] == ops["dropped"] == 0
            assert ops["retried"] == sum(r.status == 500 for r in hook_requests)
            assert metric(text, "fakewatch_webhook_outbox_pending", endpoint="ops") == 0
            # queued before it was disabled: marked disabled; after: never queued
            assert outcomes(text, "gone")["disabled"] == EVENTS

        retried = sum(r.status == 500 for r in hook_requests)
        print(
            f"\nwebhook outage: {EVENTS} events, {retried} answered 500 during "
            f"{recovered - started:.1f} s outage, delivered {len(delivered)}, unique {unique}, "
            f"duplicates {duplicates}, drained in {drain_s:.2f} s after recovery "
            f"(emitted in {emitted_s:.2f} s); 410 endpoint: {len(gone_requests)} request(s), "
            f"then disabled ({len(gone_rows)} queued rows disabled, the rest never queued)"
        )

    run(check)


def _attempts(requests: list[Request]) -> dict[str, list[Request]]:
    grouped: dict[str, list[Request]] = {}
    for request in requests:
        grouped.setdefault(request.id, []).append(request)
    return grouped


@pytest.mark.reliability
def test_a_tampered_body_a_wrong_secret_or_a_stale_timestamp_fail_verification() -> None:
    """A real delivery verifies with ``standardwebhooks``; every forgery of it does not."""

    async def check(receiver: Receiver) -> None:
        async with serving(**hooks(endpoint(receiver))) as service:
            event = health()
            await emit(service, event)
            await receiver.wait(lambda r: len(r.delivered()) == 1)
        (request,) = receiver.delivered()
        headers, body = dict(request.headers), request.body
        secret = receiver.secrets[0]
        verifier = Webhook(secret)
        assert verifier.verify(body, headers)["data"]["id"] == event.id  # the real one passes

        def resigned(stamp: int, message_id: str = request.id) -> dict[str, str]:
            key = webhook_secret_key(secret)
            signature = sign([key], message_id, str(stamp), body.decode())
            return {**headers, "webhook-timestamp": str(stamp), "webhook-signature": signature}

        now = int(time.time())
        # our signature is the reference library's for the same id, time and body
        assert resigned(now)["webhook-signature"] == verifier.sign(
            request.id, _utc(now), body.decode()
        )
        flipped = bytearray(body)
        flipped[len(flipped) // 2] ^= 0x01
        forgeries = {
            "tampered body": (verifier, bytes(flipped), headers),
            "body with a field added": (verifier, body[:-1] + b',"x":1}', headers),
            "wrong secret": (Webhook(new_secret()), body, headers),
            "secret of another length": (
                Webhook("whsec_" + base64.b64encode(b"k" * 24).decode()),
                body,
                headers,
            ),
            "stale timestamp (10 min old), correctly signed": (verifier, body, resigned(now - 600)),
            "future timestamp (10 min ahead)": (verifier, body, resigned(now + 600)),
            "replayed under another id": (verifier, body, {**headers, "webhook-id": "msg_other"}),
            "timestamp changed, old signature": (
                verifier,
                body,
                {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 30)},
            ),
            "no signature": (
                verifier,
                body,
                {k: v for k, v in headers.items() if k != "webhook-signature"},
            ),
        }
        refused = []
        for name, (webhook, data, forged) in forgeries.items():
            with pytest.raises(WebhookVerificationError):
                webhook.verify(data, forged)
            refused.append(name)
        assert verifier.verify(body, resigned(now - 60))  # within the 5 min tolerance
        print(
            f"\nwebhook verification: 1 genuine delivery verified, {len(refused)} forgeries "
            f"refused by standardwebhooks: {', '.join(refused)}"
        )

    run(check)


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
