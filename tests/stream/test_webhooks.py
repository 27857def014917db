"""Webhooks: signed (Standard Webhooks), retried through outages, durable across restarts.

The receiver is a real HTTP server on a free loopback port that answers as a test
scripts it and verifies every request with ``standardwebhooks``, the reference
library, for each of two live secrets (rotation). The service is the real one
(``serving``); events are built here and handed to the service's own sinks, so the
evidence store writes an alert's pictures before the webhook is queued, except in the
end-to-end test, where a real stream's ``stream.up`` is delivered.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from fakewatch.stream.analysis.events import EventType
from fakewatch.stream.config import (
    ConfigError,
    ServiceConfig,
    WebhookEndpoint,
    describe_config,
    load_config,
)
from fakewatch.stream.logs import JsonFormatter, TextFormatter
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.sinks.delivery import (
    GuardedResolver,
    WebhookDelivery,
    WebhookURLError,
    parse_retry_after,
)
from fakewatch.stream.sinks.evidence import EvidenceStore
from fakewatch.stream.sinks.outbox import Delivery, Outbox, Status
from fakewatch.stream.sinks.webhooks import WebhookSink
from fakewatch.stream.urlguard import RefusedAddressError, resolve_checked
from tests.support.media import face_clip, write_video
from tests.support.prometheus import metric
from tests.support.service import TOKEN, serving
from tests.support.webhooks import (
    Receiver,
    Reply,
    alert,
    emit,
    endpoint,
    health,
    hooks,
    new_secret,
    outbox_rows,
    outcomes,
    run,
    wait_rows,
)


def logged(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    """The fields of every ``event`` logged."""
    return [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == event]


def test_deliveries_are_signed_with_every_secret_and_link_the_evidence(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def check(receiver: Receiver) -> None:
        caplog.set_level(logging.DEBUG, logger="fakewatch")
        ups = endpoint(receiver, "ups", "/ups", events=["stream.up"], secrets=receiver.secrets[:1])
        async with serving(**hooks(endpoint(receiver, "all", "/all"), ups)) as service:
            suspected, up = alert(), health()
            await emit(service, suspected, up)
            await receiver.wait(lambda r: len(r.delivered()) == 3)

            everything = receiver.delivered("/all")
            assert [r.id for r in everything] == [f"msg_{suspected.id}", f"msg_{up.id}"]
            for request in everything:  # both live secrets sign every delivery
                assert request.verified == (True, True)
                assert request.headers["webhook-signature"].count("v1,") == 2
                assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 10
                assert request.headers["content-type"] == "application/json"
            (only_up,) = receiver.delivered("/ups")
            assert only_up.id == f"msg_{up.id}" and only_up.verified == (True, False)

            body = everything[0].json()
            assert body["type"] == "deepfake.suspected"
            assert datetime.fromisoformat(body["timestamp"]).timestamp() == pytest.approx(
                suspected.time, abs=0.001
            )
            data = body["data"]
            assert data["id"] == suspected.id
            assert data["stream"] == {"id": "s1", "name": "lobby", "source": suspected.source}
            assert data["track"] == "t1" and data["box"] == [120.0, 60.0, 200.0, 150.0]
            assert data["window"]["scores"] == [0.88, 0.9, 0.93]
            assert data["evidence"]["face_box"] == [120.0, 60.0, 200.0, 150.0]
            links = data["evidence_urls"]
            assert set(links) == {"frame", "crop", "mask", "clip"}
            frame_path = f"{service.base}/api/evidence/{suspected.id}/frame.jpg"
            assert links["frame"].startswith(f"{frame_path}?expires=")
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                for name, magic in (
                    ("frame", b"\xff\xd8"),
                    ("crop", b"\xff\xd8"),
                    ("mask", b"\x89PNG"),
                ):
                    async with http.get(links[name]) as response:
                        assert response.status == 200, name
                        assert (await response.read()).startswith(magic), name
            health_body = everything[1].json()
            assert health_body["type"] == "stream.up" and "evidence_urls" not in health_body["data"]

            rows = await wait_rows(service, lambda rows: len(rows) == 3)
            assert {(r.endpoint, r.status, r.attempts) for r in rows} == {
                ("all", Status.DELIVERED, 1),
                ("ups", Status.DELIVERED, 1),
            }
            text = await service.metrics_text()
            assert outcomes(text, "all")["delivered"] == 2
            assert metric(text, "fakewatch_webhook_outbox_pending", endpoint="all") == 0
            assert metric(text, "fakewatch_webhook_delivery_seconds_count", endpoint="ups") == 1
            config = service.service.config
        lines = [
            f(r) for r in caplog.records for f in (TextFormatter().format, JsonFormatter().format)
        ]
        shown = [*lines, repr(config), str(config.model_dump()), describe_config(config)]
        for secret in receiver.secrets:
            for text in shown:
                assert secret not in text and secret[6:] not in text

    run(check)


def tampered(link: str, at: int) -> str:
    """``link`` with the character at ``at`` changed (still a valid URL character)."""
    return f"{link[:at]}{'b' if link[at] == 'a' else 'a'}{link[at + 1 :]}"


def test_a_receiver_opens_the_evidence_through_signed_links_without_the_token(
    tmp_path: Path,
) -> None:
    async def check(receiver: Receiver) -> None:
        async with serving(tmp_path, **hooks(endpoint(receiver, "all", "/all"))) as service:
            suspected = alert()
            await emit(service, suspected)
            await receiver.wait(lambda r: len(r.delivered()) == 1)
            (request,) = receiver.delivered()
            assert request.verified == (True, True)
            links = request.json()["data"]["evidence_urls"]
            store = service.service.evidence
            async with aiohttp.ClientSession() as anon:  # no token
                for name, file, content_type in (
                    ("frame", "frame.jpg", "image/jpeg"),
                    ("crop", "crop.jpg", "image/jpeg"),
                    ("mask", "mask.png", "image/png"),
                ):
                    async with anon.get(links[name]) as response:
                        assert response.status == 200, name
                        assert response.content_type == content_type
                        on_disk = store.path(suspected.id, file)
                        assert on_disk and await response.read() == on_disk.read_bytes()
                    async with anon.get(links[name].split("?")[0]) as response:
                        assert response.status == 401  # the path alone needs the token
                frame = links["frame"]
                path_at = frame.index("/frame.jpg") - 1  # the event id's last character
                expires_at = frame.index("expires=") + len("expires=") + 3
                for changed in (
                    tampered(frame, path_at),
                    frame.replace("/frame.jpg", "/crop.jpg"),
                    tampered(frame, expires_at),
                    tampered(frame, len(frame) - 5),  # the signature
                    f"{frame}&extra=1",
                    frame.replace("/api/evidence/", "/api/streams/").split("?")[0]
                    + "?"
                    + frame.split("?")[1],
                ):
                    async with anon.get(changed) as response:
                        assert response.status == 403, changed
                        assert "error" in await response.json()
                async with anon.post(frame) as response:
                    assert response.status == 403
        receiver.requests.clear()
        short = {"evidence.link_ttl_s": 1, **hooks(endpoint(receiver, "all", "/all"))}
        async with serving(tmp_path, **short) as service:
            await emit(service, alert())
            await receiver.wait(lambda r: len(r.delivered()) == 1)
            links = receiver.delivered()[0].json()["data"]["evidence_urls"]
            async with aiohttp.ClientSession() as anon:
                expires = int(links["mask"].split("expires=")[1].split("&")[0])
                await asyncio.sleep(max(0.0, expires + 1.1 - time.time()))
                async with anon.get(links["mask"]) as response:
                    assert response.status == 403
                    assert "expired" in (await response.json())["error"]
        # the key lives in the evidence folder (0600): links outlive a restart
        key = tmp_path / "evidence" / ".link-key"
        assert key.stat().st_mode & 0o777 == 0o600

    run(check)


def test_retries_through_an_outage_keep_the_id_and_deliver_each_event_once() -> None:
    async def check(receiver: Receiver) -> None:
        receiver.script = [
            Reply(503),
            Reply(503, delay=1.0),  # longer than timeout_s: a timeout
            Reply(429, {"Retry-After": "1"}),
            Reply(302, {"Location": "/elsewhere"}),
            Reply(500),
        ]
        settings = hooks(endpoint(receiver, timeout_s=0.3), **{"webhooks.max_backoff_s": 2})
        async with serving(**settings) as service:
            events = [health(EventType.STREAM_DOWN), health(EventType.STREAM_UP), alert()]
            await emit(service, *events)
            ids = {f"msg_{e.id}" for e in events}
            await receiver.wait(lambda r: {q.id for q in r.delivered()} == ids)

            assert not receiver.script
            assert {r.id for r in receiver.requests} == ids
            for message_id in ids:  # one delivery, however many attempts, all alike
                attempts = [r for r in receiver.requests if r.id == message_id]
                assert sum(200 <= r.status < 300 for r in attempts) == 1
                assert len({r.body for r in attempts}) == 1
                assert all(r.verified == (True, True) for r in attempts)
                stamps = [int(r.headers["webhook-timestamp"]) for r in attempts]
                assert stamps == sorted(stamps)  # each attempt signs its own time
            assert not [r for r in receiver.requests if r.path == "/elsewhere"]  # not followed
            (limited,) = [r for r in receiver.requests if r.status == 429]
            after = [r for r in receiver.requests if r.id == limited.id and r.time > limited.time]
            assert after[0].time - limited.time >= 0.9  # Retry-After: 1 honoured

            rows = await wait_rows(service, lambda rows: all(r.status == "delivered" for r in rows))
            assert sum(r.attempts for r in rows) == len(receiver.requests) == 8
            assert {r.webhook_id for r in rows} == ids
            text = await service.metrics_text()
            assert outcomes(text, "ops") == {
                "delivered": 3,
                "retried": 5,
                "failed": 0,
                "disabled": 0,
                "dropped": 0,
            }
            assert metric(text, "fakewatch_webhook_outbox_pending", endpoint="ops") == 0

    run(check)


def test_undelivered_events_survive_a_restart_of_the_service(tmp_path: Path) -> None:
    async def check(receiver: Receiver) -> None:
        await receiver.stop()  # down: connections are refused
        settings = hooks(endpoint(receiver))
        async with serving(tmp_path, **settings) as service:
            events = [alert(), health(EventType.STREAM_DOWN)]
            await emit(service, *events)
            rows = await wait_rows(service, lambda rows: all(r.attempts >= 2 for r in rows))
            assert {r.status for r in rows} == {Status.PENDING}
            assert all("cannot connect" in (r.last_error or "") for r in rows)
        with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:
            stored = db.execute("SELECT webhook_id, status FROM deliveries").fetchall()
        ids = {f"msg_{e.id}" for e in events}
        assert set(stored) == {(i, "pending") for i in ids}

        await receiver.start()  # back, on the same port
        async with serving(tmp_path, **settings) as service:
            await receiver.wait(lambda r: {q.id for q in r.delivered()} == ids)
            rows = await wait_rows(service, lambda rows: all(r.status == "delivered" for r in rows))
            assert all(r.attempts >= 3 for r in rows)
            (body,) = [r.json() for r in receiver.requests if r.id == f"msg_{events[0].id}"]
            assert body["data"]["evidence_urls"]["frame"].startswith("http://127.0.0.1:")
        assert len(receiver.requests) == 2 and all(
            r.verified == (True, True) for r in receiver.requests
        )

    run(check)


def test_410_disables_the_endpoint_until_its_url_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def check(receiver: Receiver) -> None:
        receiver.fixed["/gone"] = Reply(410)
        gone = hooks(endpoint(receiver, path="/gone"))
        async with serving(tmp_path, **gone) as service:
            await emit(service, health())
            await wait_rows(service, lambda rows: [r.status for r in rows] == ["disabled"])
            await emit(service, health(EventType.STREAM_DOWN))  # not even queued
            await asyncio.sleep(0.3)
            assert len(receiver.requests) == 1 and len(await outbox_rows(service)) == 1
            text = await service.metrics_text()
            assert outcomes(text, "ops")["disabled"] == 2
        (disabled,) = logged(caplog, "webhook.endpoint_disabled")
        assert (
            "answered 410 Gone" in disabled["detail"] and disabled["url"] == receiver.url + "/gone"
        )

        caplog.clear()
        async with serving(tmp_path, **gone) as service:  # still disabled after a restart
            await emit(service, health())
            await asyncio.sleep(0.3)
            assert len(receiver.requests) == 1
        (still,) = logged(caplog, "webhook.endpoint_disabled")
        assert "until its url changes" in still["detail"] and "410 Gone" in still["reason"]

        async with serving(tmp_path, **hooks(endpoint(receiver, path="/new"))) as service:
            event = health()
            await emit(service, event)
            await receiver.wait(lambda r: len(r.delivered("/new")) == 1)
            assert receiver.delivered("/new")[0].id == f"msg_{event.id}"

    run(check)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9000/hook", "127.0.0.1 is a loopback address"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.1.20/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://100.64.0.1/hook", "not globally routable"),
        ("ftp://example.com/hook", "scheme 'ftp' is not allowed"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("https:///hook", "no host"),
    ],
)
def test_webhook_urls_are_checked_at_load(url: str, reason: str) -> None:
    entry = {"name": "ops", "url": url, "secrets": [new_secret()]}
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, overrides={"webhooks.endpoints": [entry]})
    assert "webhooks.endpoints.0" in str(caught.value) and reason in str(caught.value)
    if "scheme" not in reason and "host" not in reason:  # allow_private lets addresses by
        entry["allow_private"] = True
        load_config(environ={}, overrides={"webhooks.endpoints": [entry]})


@pytest.mark.parametrize(
    ("secrets", "reason"),
    [
        ([], "needs secrets or secrets_file"),
        (["hunter2-hunter2-hunter2-hunter2"], "a webhook secret is whsec_"),
        (["whsec_not*base64*at*all"], "not valid base64"),
        (["whsec_" + base64.b64encode(b"short").decode()], "24 to 64 bytes, not 5"),
    ],
)
def test_secrets_are_checked_and_never_quoted(secrets: list[str], reason: str) -> None:
    entry = {"name": "ops", "url": "https://hooks.example.com/x", "secrets": secrets}
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, overrides={"webhooks.endpoints": [entry]})
    assert reason in str(caught.value)
    for secret in secrets:
        assert secret not in str(caught.value)


def test_secrets_from_a_file_or_the_environment(tmp_path: Path) -> None:
    first, second, third = new_secret(), new_secret(), new_secret()
    path = tmp_path / "secrets"
    path.write_text(f"# rotated 2026-11-26\n{second}\n\n{third}  # the new one\n")
    environ = {
        "FAKEWATCH_WEBHOOKS__ENDPOINTS": (
            f"[{{name: ops, url: 'https://hooks.example.com/fw', secrets: [{first}], "
            f"secrets_file: {path}, events: [deepfake.suspected]}}]"
        ),
        "FAKEWATCH_WEBHOOKS__MAX_PENDING": "50",
    }
    config = load_config(environ=environ)
    (ops,) = config.webhooks.endpoints
    assert [s.get_secret_value() for s in ops.secrets] == [first, second, third]
    assert ops.events == ("deepfake.suspected",) and config.webhooks.max_pending == 50
    missing = {
        **environ,
        "FAKEWATCH_WEBHOOKS__ENDPOINTS": "[{name: a, url: 'https://x.example', "
        f"secrets_file: {tmp_path / 'nope'}}}]",
    }
    with pytest.raises(ConfigError, match="cannot read secrets_file"):
        load_config(environ=missing)


def test_every_webhook_limit_has_bounds_and_a_description() -> None:
    for model in (WebhookEndpoint, type(ServiceConfig().webhooks)):
        for name, spec in model.model_fields.items():
            if spec.annotation in (int, float):
                assert spec.description and spec.metadata, f"{model.__name__}.{name}"


def test_host_names_are_checked_when_resolved(tmp_path: Path) -> None:
    async def check(receiver: Receiver) -> None:
        with pytest.raises(RefusedAddressError, match="localhost resolves only to refused"):
            await resolve_checked("localhost", 80)
        assert "127.0.0.1" in await resolve_checked("localhost", 80, allow_private=True)

        # at delivery: the connection's own resolver refuses, and nothing reaches the receiver
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(False), use_dns_cache=False)
        async with aiohttp.ClientSession(connector=connector) as http:
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await http.post(f"http://localhost:{receiver.port}/hook", data=b"{}")
        assert isinstance(caught.value.os_error, RefusedAddressError)
        assert "loopback" in str(caught.value.os_error)
        assert receiver.requests == []

        # at start: a name that resolves to loopback is refused unless allow_private
        entry = {
            "name": "ops",
            "url": f"http://localhost:{receiver.port}/",
            "secrets": [new_secret()],
        }
        config = load_config(
            environ={},
            overrides={
                "webhooks.endpoints": [entry],
                "webhooks.outbox": str(tmp_path / "o.sqlite3"),
            },
        )
        sink = WebhookSink(config.webhooks, EvidenceStore(tmp_path / "evidence"), PipelineMetrics())
        with pytest.raises(WebhookURLError, match="webhook endpoint 'ops': localhost resolves"):
            await sink.start()
        await sink.close()

    run(check)


def test_outbox_bounds_pending_age_and_attempts(tmp_path: Path) -> None:
    async def check() -> None:
        outbox = Outbox(
            tmp_path / "o.sqlite3", max_pending=3, max_age_s=100, max_attempts=2, history_s=50
        )
        try:
            await outbox.open({"ops": "fp"}, now=1000)
            added = await outbox.add(
                Delivery(f"msg_{i}", "ops", "stream.up", "{}", created=1000 + i) for i in range(5)
            )
            assert added["ops"].pending == 3 and added["ops"].dropped == 2  # the oldest went
            assert [d.webhook_id for d in await outbox.deliveries()] == ["msg_2", "msg_3", "msg_4"]
            again = await outbox.add([Delivery("msg_4", "ops", "stream.up", "{}", created=1010)])
            assert again["ops"].pending == 3  # the same id again is not a second delivery

            claimed, expired = await outbox.claim("ops", 10, now=1003.5)
            assert [d.webhook_id for d in claimed] == ["msg_2", "msg_3"] and expired == 0
            assert await outbox.claim("ops", 10, now=1003.5) == ([], 0)  # in flight
            status, pending = await outbox.failed_attempt(claimed[0], 1.0, "HTTP 503", now=1004)
            assert status is Status.PENDING and pending == 3
            assert await outbox.next_due("ops") == 1004  # msg_4
            status, _ = await outbox.failed_attempt(claimed[1], 1.0, "HTTP 503", now=1004)
            assert status is Status.PENDING
            due, _ = await outbox.claim("ops", 10, now=1005)  # msg_4 (due 1004), then msg_2
            assert [d.webhook_id for d in due] == ["msg_4", "msg_2", "msg_3"]
            assert due[1].attempts == 1 and due[1].last_error == "HTTP 503"
            status, pending = await outbox.failed_attempt(due[1], 1.0, "HTTP 503", now=1005)
            assert status is Status.FAILED and pending == 2  # max_attempts
            status, _ = await outbox.failed_attempt(due[0], 1.0, "timed out", now=1005)
            assert status is Status.PENDING  # msg_3 stays in flight: the service "crashes"
            assert await outbox.claim("ops", 10, now=1200) == ([], 1)  # msg_4: max_age
            rows = {d.webhook_id: d for d in await outbox.deliveries()}
            assert rows["msg_2"].last_error == "HTTP 503; gave up: max_attempts"
            assert rows["msg_4"].last_error == "timed out; gave up: older than max_age"
            # a restart resumes msg_3, and prunes msg_2 (finished more than history_s ago)
            await outbox.open({"ops": "fp"}, now=1200)
            assert await outbox.claim("ops", 10, now=1200) == ([], 1)  # msg_3 is too old now
            rows = {d.webhook_id: d for d in await outbox.deliveries()}
            assert set(rows) == {"msg_3", "msg_4"}
            assert {d.status for d in rows.values()} == {Status.FAILED}
            assert await outbox.prune(now=1300) == 2  # finished rows past history_s
        finally:
            await outbox.close()

    asyncio.run(check())


def test_backoff_doubles_with_jitter_and_retry_after_takes_seconds_or_a_date() -> None:
    config = load_config(
        environ={},
        overrides={
            "webhooks.initial_backoff_s": 1,
            "webhooks.max_backoff_s": 10,
            "webhooks.backoff_jitter": 0.2,
        },
    )
    delivery = WebhookDelivery(config.webhooks, Outbox(Path("unused")), PipelineMetrics())
    for attempts, base in ((1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (50, 10)):
        delays = [delivery.backoff(attempts) for _ in range(200)]
        assert min(delays) >= base * 0.8 and max(delays) <= min(10, base * 1.2)
        assert max(delays) - min(delays) > 0.1 * base  # jittered
    assert parse_retry_after("7", 0) == 7
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", 1792567650) == 30
    assert parse_retry_after("soon", 0) is None and parse_retry_after(None, 0) is None


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("clips") / "face.mp4"
    return write_video(path, face_clip(astronaut, 30, (320, 240)))


def test_a_real_streams_stream_up_is_delivered(clip: Path) -> None:
    async def check(receiver: Receiver) -> None:
        ups = endpoint(receiver, events=["stream.up"])
        async with serving(**hooks(ups)) as service:
            stream = await service.add(str(clip), "lobby")
            await receiver.wait(lambda r: len(r.delivered()) >= 1, timeout=30)
            (up,) = service.events.of_type(EventType.STREAM_UP, stream)
            request = receiver.delivered()[0]
            assert request.id == f"msg_{up.id}" and request.verified == (True, True)
            body = request.json()
            assert body["type"] == "stream.up"
            assert body["data"]["stream"] == {"id": stream, "name": "lobby", "source": str(clip)}

    run(check)
