"""Webhook deliveries sent from the outbox: one worker per endpoint.

:class:`WebhookDelivery` runs one asyncio task per endpoint that POSTs its due rows of
the :class:`~fakewatch.stream.sinks.outbox.Outbox`, at most ``max_in_flight`` at once,
each signed (:mod:`~fakewatch.stream.sinks.signing`). Outcomes: any 2xx is delivered;
``410 Gone`` disables the endpoint (kept across restarts until its URL changes);
anything else (3xx included: redirects are not followed), a timeout or a connection
error is retried after an exponential backoff with jitter, or after the ``Retry-After``
the receiver asked for (capped at ``max_backoff_s``), until ``max_attempts`` or
``max_age_s``. Every connection goes to an address checked when it is resolved:
loopback, private, link-local, multicast and reserved addresses are refused unless the
endpoint sets ``allow_private``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from fakewatch.engines.defaults import installed_version
from fakewatch.stream.backoff import backoff_delay
from fakewatch.stream.config import ConfigError, WebhookEndpoint, WebhooksConfig
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.redact import redact_text, redact_url
from fakewatch.stream.sinks.outbox import Delivery, Outbox, Status, url_fingerprint
from fakewatch.stream.sinks.signing import iso_time, sign
from fakewatch.stream.urlguard import RefusedAddressError, refused_addresses, resolve_checked

logger = logging.getLogger(f"{LOGGER_NAME}.webhooks")

IDLE_RECHECK_S = 60.0
"""Longest the worker sleeps without looking at the outbox (clock changes, say)."""
ERROR_SNIPPET = 200
OUTCOMES = ("delivered", "retried", "failed", "disabled", "dropped")


class WebhookURLError(ConfigError):
    """A webhook endpoint whose host resolves only to addresses that are refused."""


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class GuardedResolver(AbstractResolver):
    """Resolves host names for one endpoint and keeps only the addresses it may reach,
    so a connection goes exactly where the check said it could (DNS can change)."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self.allow_private:
            return results
        allowed, refused = refused_addresses([r["host"] for r in results])
        if not allowed:
            raise RefusedAddressError(
                f"{host} resolves only to refused addresses: {', '.join(refused)}; "
                "set allow_private: true to send webhooks there"
            )
        return [r for r in results if r["host"] in allowed]

    async def close(self) -> None:
        await self._inner.close()


@dataclass
class _Endpoint:
    config: WebhookEndpoint
    keys: list[bytes] = field(repr=False)
    fingerprint: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    disabled: bool = False
    session: aiohttp.ClientSession | None = None
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class _Result:
    status: int | None
    error: str
    retry_after: float | None


class WebhookDelivery:
    """Sends the outbox's due deliveries: one task per endpoint, started with the service."""

    def __init__(
        self,
        settings: WebhooksConfig,
        outbox: Outbox,
        metrics: PipelineMetrics,
        rng: random.Random | None = None,
    ) -> None:
        self.settings, self.outbox, self.metrics = settings, outbox, metrics
        self.endpoints = {
            e.name: _Endpoint(e, e.keys(), url_fingerprint(e.url)) for e in settings.endpoints
        }
        self._random = rng or random.Random()
        self._closing = False

    def accepts(self, name: str) -> bool:
        """Whether deliveries to ``name`` are made (it is not disabled)."""
        return not self.endpoints[name].disabled

    def wake(self, name: str) -> None:
        """A delivery of ``name`` is due now."""
        self.endpoints[name].wake.set()

    async def start(self) -> None:
        """Resume the outbox, check where each endpoint resolves, start the workers."""
        resumed = await self.outbox.open({n: e.fingerprint for n, e in self.endpoints.items()})
        if resumed.orphaned:
            log(
                logger,
                logging.WARNING,
                "webhook.orphaned",
                detail="pending deliveries of endpoints no longer configured were given up",
                deliveries=resumed.orphaned,
            )
        for name in resumed.reenabled:
            log(
                logger,
                logging.INFO,
                "webhook.endpoint_reenabled",
                endpoint=name,
                detail="disabled before; its url has changed since",
            )
        for name, disabled in resumed.disabled.items():
            self.endpoints[name].disabled = True
            log(
                logger,
                logging.ERROR,
                "webhook.endpoint_disabled",
                endpoint=name,
                since=iso_time(disabled.since),
                reason=disabled.reason,
                detail="no deliveries to it until its url changes in the configuration",
            )
        for name, pending in resumed.pending.items():
            self.metrics.webhook_pending.labels(name).set(pending)
            if pending:
                log(logger, logging.INFO, "webhook.resumed", endpoint=name, pending=pending)
        for endpoint in self.endpoints.values():
            if not endpoint.disabled:
                await self._check_host(endpoint)
        for endpoint in self.endpoints.values():
            for outcome in OUTCOMES:  # exported at 0 from the start
                self.metrics.webhook_deliveries.labels(endpoint.name, outcome)
            if endpoint.disabled:
                continue
            endpoint.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=GuardedResolver(endpoint.config.allow_private),
                    use_dns_cache=False,
                    limit=self.settings.max_in_flight,
                ),
                timeout=aiohttp.ClientTimeout(total=endpoint.config.timeout_s),
                headers={"User-Agent": f"fakewatch/{installed_version()}"},
            )
            endpoint.task = asyncio.get_running_loop().create_task(
                self._run(endpoint), name=f"webhooks {endpoint.name}"
            )

    async def _check_host(self, endpoint: _Endpoint) -> None:
        parts = urlsplit(endpoint.config.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            await resolve_checked(host, port, endpoint.config.allow_private)
        except RefusedAddressError as error:
            raise WebhookURLError(f"webhook endpoint {endpoint.name!r}: {error}") from None
        except (OSError, UnicodeError) as error:  # unresolvable now: retried at delivery
            log(
                logger,
                logging.WARNING,
                "webhook.unresolved",
                endpoint=endpoint.name,
                host=host,
                error=describe_error(error),
            )

    async def close(self, grace_s: float = 0.0) -> None:
        """Stop the workers: no attempt starts any more, attempts under way get up to
        ``grace_s`` to finish and record their outcome (an answered delivery is then not
        sent again after a restart), the rest are interrupted and resumed at the next
        start."""
        tasks = [e.task for e in self.endpoints.values() if e.task is not None]
        self._closing = True
        if tasks and grace_s > 0:
            for endpoint in self.endpoints.values():
                endpoint.wake.set()
            await asyncio.wait(tasks, timeout=grace_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for endpoint in self.endpoints.values():
            endpoint.task = None
            if endpoint.session is not None:
                await endpoint.session.close()
                endpoint.session = None
        await self.outbox.close()

    def backoff(self, attempts: int) -> float:
        """The delay after ``attempts`` failed attempts: doubling, jittered, capped."""
        settings = self.settings
        return backoff_delay(
            attempts - 1,
            settings.initial_backoff_s,
            settings.max_backoff_s,
            settings.backoff_jitter,
            self._random,
        )

    async def _run(self, endpoint: _Endpoint) -> None:
        in_flight: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            endpoint.wake.set()

        limit = self.settings.max_in_flight
        try:
            while not endpoint.disabled and not self._closing:
                endpoint.wake.clear()
                try:
                    delay = await self._start_due(endpoint, in_flight, limit, finished)
                except Exception as error:  # the disk, say: keep going, try again later
                    log(
                        logger,
                        logging.ERROR,
                        "webhook.outbox_error",
                        endpoint=endpoint.name,
                        error=describe_error(error),
                    )
                    delay = self.settings.initial_backoff_s
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the wait ends, and close() would then wait forever
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await endpoint.wake.wait()
            # disabled or closing: the attempts under way still record their outcome
            await asyncio.gather(*in_flight, return_exceptions=True)
        finally:  # closing: attempts under way are resumed at the next start
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _start_due(
        self,
        endpoint: _Endpoint,
        in_flight: set[asyncio.Task[None]],
        limit: int,
        finished: Callable[[asyncio.Task[None]], None],
    ) -> float:
        """Start attempts of the due deliveries there is room for; how long to wait then."""
        free = limit - len(in_flight)
        if free > 0:
            claimed, expired = await self.outbox.claim(endpoint.name, free)
            if expired:
                self.metrics.webhook_deliveries.labels(endpoint.name, "failed").inc(expired)
                log(
                    logger,
                    logging.ERROR,
                    "webhook.failed",
                    endpoint=endpoint.name,
                    deliveries=expired,
                    detail="gave up: older than max_age_s",
                )
            for delivery in claimed:
                task = asyncio.get_running_loop().create_task(self._deliver(endpoint, delivery))
                in_flight.add(task)
                task.add_done_callback(finished)
            if len(claimed) == free:
                return 0.0  # there may be more due
        if len(in_flight) >= limit:
            return IDLE_RECHECK_S  # a finishing attempt wakes the loop
        due = await self.outbox.next_due(endpoint.name)
        if due is None:
            return IDLE_RECHECK_S
        return min(IDLE_RECHECK_S, max(0.0, due - time.time()))

    async def _post(self, endpoint: _Endpoint, delivery: Delivery, now: float) -> _Result:
        stamp = str(int(now))
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": stamp,
            "webhook-signature": sign(endpoint.keys, delivery.webhook_id, stamp, delivery.body),
        }
        assert endpoint.session is not None
        try:
            async with endpoint.session.post(
                endpoint.config.url,
                data=delivery.body.encode(),
                headers=headers,
                allow_redirects=False,
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    return _Result(status, "", None)
                retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
                snippet = await response.content.read(ERROR_SNIPPET)
                text = " ".join(snippet.decode(errors="replace").split())
                reason = f"HTTP {status}" + (f": {text}" if text else "")
                if 300 <= status < 400:
                    location = redact_url(response.headers.get("Location", ""))
                    reason = f"HTTP {status} redirect to {location!r} (not followed)"
                return _Result(status, reason, retry_after)
        except aiohttp.ClientConnectorError as error:
            cause = error.os_error
            if isinstance(cause, RefusedAddressError):
                return _Result(None, f"refused: {cause}", None)
            return _Result(None, f"cannot connect: {cause.strerror or cause}", None)
        except TimeoutError:
            return _Result(None, f"no answer within timeout_s={endpoint.config.timeout_s}", None)
        except (aiohttp.ClientError, OSError) as error:
            return _Result(None, describe_error(error), None)

    async def _deliver(self, endpoint: _Endpoint, delivery: Delivery) -> None:
        """One attempt of ``delivery``, and what it leads to."""
        try:
            await self._attempt(endpoint, delivery)
        except Exception as error:  # the outbox could not record it: resumed at restart
            log(
                logger,
                logging.ERROR,
                "webhook.outbox_error",
                endpoint=endpoint.name,
                webhook_id=delivery.webhook_id,
                error=describe_error(error),
            )

    async def _attempt(self, endpoint: _Endpoint, delivery: Delivery) -> None:
        name, now = endpoint.name, time.time()
        started = time.monotonic()
        result = await self._post(endpoint, delivery, now)
        seconds = time.monotonic() - started
        self.metrics.webhook_seconds.labels(name).observe(seconds)
        status, error = result.status, redact_text(result.error)
        attempt = delivery.attempts + 1
        fields: dict[str, Any] = {
            "endpoint": name,
            "webhook_id": delivery.webhook_id,
            "type": delivery.event_type,
            "attempt": attempt,
        }
        if status is not None and 200 <= status < 300:
            pending = await self.outbox.delivered(delivery, f"HTTP {status}")
            self.metrics.webhook_deliveries.labels(name, "delivered").inc()
            log(logger, logging.INFO, "webhook.delivered", **fields, status=status, seconds=seconds)
        elif endpoint.disabled:
            return  # disabled meanwhile: the outbox has already marked this one
        elif status == 410:
            endpoint.disabled = True
            reason = f"HTTP 410 Gone at {iso_time(now)}"
            count = await self.outbox.disable(name, endpoint.fingerprint, reason, delivery)
            endpoint.wake.set()
            self.metrics.webhook_deliveries.labels(name, "disabled").inc(max(count, 1))
            pending = 0
            log(
                logger,
                logging.ERROR,
                "webhook.endpoint_disabled",
                **fields,
                url=redact_url(endpoint.config.url),
                deliveries=count,
                detail="the endpoint answered 410 Gone: no more deliveries to it until its "
                "url changes in the configuration",
            )
        else:
            if result.retry_after is not None:
                delay = min(result.retry_after, self.settings.max_backoff_s)
            else:
                delay = self.backoff(attempt)
            outcome, pending = await self.outbox.failed_attempt(delivery, delay, error)
            if outcome is Status.FAILED:
                self.metrics.webhook_deliveries.labels(name, "failed").inc()
                log(
                    logger,
                    logging.ERROR,
                    "webhook.failed",
                    **fields,
                    error=error,
                    detail="gave up: max_attempts or max_age_s reached",
                )
            else:
                self.metrics.webhook_deliveries.labels(name, "retried").inc()
                log(
                    logger,
                    logging.WARNING,
                    "webhook.retry",
                    **fields,
                    error=error,
                    retry_in_s=delay,
                )
        self.metrics.webhook_pending.labels(name).set(pending)
