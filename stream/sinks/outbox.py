"""A durable outbox of webhook deliveries, in SQLite.

Every event a webhook endpoint should receive becomes one row, written before the
first attempt to send it, so a delivery outlives a receiver's outage and a restart of
the service: rows still pending are resumed when the service starts again. A row
keeps the Standard Webhooks message id (the same on every attempt, so a receiver can
drop duplicates), the exact body, the attempts so far, when the next is due, its
status (``pending``, ``delivered``, ``failed``, ``disabled``) and the last error.

The outbox is bounded: at most ``max_pending`` pending rows per endpoint (the oldest
are dropped beyond it), none pending longer than ``max_age_s`` or after
``max_attempts`` attempts (given up: ``failed``), and finished rows are deleted after
``history_s``. An endpoint that answered ``410 Gone`` is recorded as disabled with a
fingerprint of its URL, and stays disabled across restarts until its URL changes.

SQLite runs in WAL mode on one worker thread; every method of :class:`Outbox` is a
coroutine that hands its work to that thread, so the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    webhook_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    event_type TEXT NOT NULL,
    body TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    claimed INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    PRIMARY KEY (webhook_id, endpoint)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (endpoint, status, next_attempt);
CREATE INDEX IF NOT EXISTS deliveries_finished ON deliveries (status, updated);
CREATE TABLE IF NOT EXISTS endpoints (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    disabled_at REAL,
    reason TEXT
);
"""
COLUMNS = (
    "webhook_id, endpoint, event_type, body, created, attempts, next_attempt, status, last_error"
)


class Status(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DISABLED = "disabled"


@dataclass(frozen=True)
class Delivery:
    """One event for one endpoint."""

    webhook_id: str
    endpoint: str
    event_type: str
    body: str
    created: float
    attempts: int = 0
    next_attempt: float = 0.0
    status: Status = Status.PENDING
    last_error: str | None = None


@dataclass(frozen=True)
class Disabled:
    """An endpoint that answered 410 Gone."""

    since: float
    reason: str


@dataclass
class Resumed:
    """What :meth:`Outbox.open` found from before."""

    pending: dict[str, int] = field(default_factory=dict)
    """Pending deliveries per configured endpoint."""
    disabled: dict[str, Disabled] = field(default_factory=dict)
    """Configured endpoints still disabled (their URL has not changed)."""
    reenabled: list[str] = field(default_factory=list)
    """Disabled endpoints whose URL has changed since."""
    orphaned: int = 0
    """Pending deliveries of endpoints no longer configured, now given up."""


@dataclass(frozen=True)
class Added:
    """What :meth:`Outbox.add` did for one endpoint."""

    pending: int
    dropped: int


def url_fingerprint(url: str) -> str:
    """What identifies an endpoint's configuration for its disabled state."""
    return hashlib.sha256(url.encode()).hexdigest()


class Outbox:
    """Webhook deliveries in SQLite at ``path``; see the module's description."""

    def __init__(
        self,
        path: Path,
        *,
        max_pending: int = 10000,
        max_age_s: float = 86400.0,
        max_attempts: int = 30,
        history_s: float = 86400.0,
    ) -> None:
        self.path = path
        self.max_pending, self.max_age_s = max_pending, max_age_s
        self.max_attempts, self.history_s = max_attempts, history_s
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="outbox")
        self._db: sqlite3.Connection | None = None

    # plumbing: everything runs on the one outbox thread

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, work, *args)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a written row survives a power cut
            db.execute("PRAGMA busy_timeout=5000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                db.close()
                raise RuntimeError(
                    f"{self.path} was written by a newer fakewatch (outbox schema {version})"
                )
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db = db
        return self._db

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    @staticmethod
    def _pending(db: sqlite3.Connection, endpoint: str) -> int:
        row = db.execute(
            "SELECT count(*) FROM deliveries WHERE endpoint = ? AND status = 'pending'",
            (endpoint,),
        ).fetchone()
        return int(row[0])

    # the public coroutines

    async def open(self, endpoints: dict[str, str], now: float | None = None) -> Resumed:
        """Reconcile with the configured ``endpoints`` (name to URL fingerprint): resume
        interrupted attempts, give up on endpoints no longer configured, re-enable those
        whose URL changed, and prune old history."""
        return await self._run(self._open, endpoints, time.time() if now is None else now)

    def _open(self, endpoints: dict[str, str], now: float) -> Resumed:
        def work(db: sqlite3.Connection) -> Resumed:
            resumed = Resumed()
            db.execute("UPDATE deliveries SET claimed = 0 WHERE claimed = 1")
            known = {row["name"]: row for row in db.execute("SELECT * FROM endpoints").fetchall()}
            for name, fingerprint in endpoints.items():
                row = known.get(name)
                if row is None:
                    db.execute(
                        "INSERT INTO endpoints (name, fingerprint) VALUES (?, ?)",
                        (name, fingerprint),
                    )
                elif row["fingerprint"] != fingerprint:
                    if row["disabled_at"] is not None:
                        resumed.reenabled.append(name)
                    db.execute(
                        "UPDATE endpoints SET fingerprint = ?, disabled_at = NULL, reason = NULL "
                        "WHERE name = ?",
                        (fingerprint, name),
                    )
                elif row["disabled_at"] is not None:
                    resumed.disabled[name] = Disabled(row["disabled_at"], row["reason"] or "")
                    db.execute(
                        "UPDATE deliveries SET status = 'disabled', updated = ? "
                        "WHERE endpoint = ? AND status = 'pending'",
                        (now, name),
                    )
                resumed.pending[name] = self._pending(db, name)
            marks = ",".join("?" * len(endpoints))
            resumed.orphaned = db.execute(
                "UPDATE deliveries SET status = 'failed', updated = ?, "
                "last_error = 'the endpoint is no longer configured' "
                f"WHERE status = 'pending' AND endpoint NOT IN ({marks})",
                (now, *endpoints),
            ).rowcount
            self._prune(db, now)
            return resumed

        return self._transaction(work)

    async def add(self, deliveries: Iterable[Delivery]) -> dict[str, Added]:
        """Write new deliveries (pending, due now); a delivery already there is kept as
        it is. Beyond ``max_pending`` an endpoint's oldest pending deliveries are dropped."""
        return await self._run(self._add, list(deliveries))

    def _add(self, deliveries: list[Delivery]) -> dict[str, Added]:
        def work(db: sqlite3.Connection) -> dict[str, Added]:
            for item in deliveries:
                db.execute(
                    "INSERT OR IGNORE INTO deliveries (webhook_id, endpoint, event_type, body, "
                    "created, next_attempt, updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        item.webhook_id,
                        item.endpoint,
                        item.event_type,
                        item.body,
                        item.created,
                        item.next_attempt or item.created,
                        item.created,
                    ),
                )
            result = {}
            for endpoint in {item.endpoint for item in deliveries}:
                pending = self._pending(db, endpoint)
                dropped = 0
                if pending > self.max_pending:
                    dropped = db.execute(
                        "DELETE FROM deliveries WHERE rowid IN (SELECT rowid FROM deliveries "
                        "WHERE endpoint = ? AND status = 'pending' ORDER BY created, rowid "
                        "LIMIT ?)",
                        (endpoint, pending - self.max_pending),
                    ).rowcount
                result[endpoint] = Added(pending - dropped, dropped)
            return result

        return self._transaction(work)

    async def claim(
        self, endpoint: str, limit: int, now: float | None = None
    ) -> tuple[list[Delivery], int]:
        """Up to ``limit`` due deliveries of ``endpoint``, oldest due first, marked as in
        flight so that no one else takes them; and how many were given up as too old."""
        return await self._run(self._claim, endpoint, limit, time.time() if now is None else now)

    def _claim(self, endpoint: str, limit: int, now: float) -> tuple[list[Delivery], int]:
        def work(db: sqlite3.Connection) -> tuple[list[Delivery], int]:
            expired = db.execute(
                "UPDATE deliveries SET status = 'failed', updated = ?, claimed = 0, "
                "last_error = coalesce(last_error || '; ', '') || 'gave up: older than max_age' "
                "WHERE endpoint = ? AND status = 'pending' AND claimed = 0 AND created < ?",
                (now, endpoint, now - self.max_age_s),
            ).rowcount
            rows = db.execute(
                f"UPDATE deliveries SET claimed = 1 WHERE rowid IN (SELECT rowid FROM deliveries "
                "WHERE endpoint = ? AND status = 'pending' AND claimed = 0 AND next_attempt <= ? "
                f"ORDER BY next_attempt, created LIMIT ?) RETURNING {COLUMNS}",
                (endpoint, now, limit),
            ).fetchall()
            claimed = sorted(map(_delivery, rows), key=lambda d: (d.next_attempt, d.created))
            return claimed, expired

        return self._transaction(work)

    async def next_due(self, endpoint: str) -> float | None:
        """When the next delivery of ``endpoint`` not in flight is due; ``None``: none is."""
        return await self._run(self._next_due, endpoint)

    def _next_due(self, endpoint: str) -> float | None:
        row = (
            self._conn()
            .execute(
                "SELECT min(next_attempt) FROM deliveries "
                "WHERE endpoint = ? AND status = 'pending' AND claimed = 0",
                (endpoint,),
            )
            .fetchone()
        )
        return None if row[0] is None else float(row[0])

    async def delivered(self, delivery: Delivery, detail: str, now: float | None = None) -> int:
        """Record a delivered attempt; the endpoint's pending count after it."""
        return await self._run(
            self._finish, delivery, Status.DELIVERED, detail, time.time() if now is None else now
        )

    async def give_up(self, delivery: Delivery, error: str, now: float | None = None) -> int:
        """Record a failed attempt after which there is no other; the pending count."""
        return await self._run(
            self._finish, delivery, Status.FAILED, error, time.time() if now is None else now
        )

    def _finish(self, delivery: Delivery, status: Status, detail: str, now: float) -> int:
        def work(db: sqlite3.Connection) -> int:
            db.execute(
                "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?, "
                "claimed = 0, updated = ? "
                "WHERE webhook_id = ? AND endpoint = ? AND status = 'pending'",
                (str(status), detail, now, delivery.webhook_id, delivery.endpoint),
            )
            return self._pending(db, delivery.endpoint)

        return self._transaction(work)

    async def failed_attempt(
        self, delivery: Delivery, delay_s: float, error: str, now: float | None = None
    ) -> tuple[Status, int]:
        """Record a failed attempt: another is due after ``delay_s`` unless this was the
        last one allowed (``max_attempts``, ``max_age_s``). The delivery's status after
        it (pending or failed) and the endpoint's pending count."""
        return await self._run(
            self._failed_attempt, delivery, delay_s, error, time.time() if now is None else now
        )

    def _failed_attempt(
        self, delivery: Delivery, delay_s: float, error: str, now: float
    ) -> tuple[Status, int]:
        attempts = delivery.attempts + 1
        too_many = attempts >= self.max_attempts
        too_old = now + delay_s - delivery.created > self.max_age_s
        if too_many or too_old:
            why = "max_attempts" if too_many else "max_age"
            pending = self._finish(delivery, Status.FAILED, f"{error}; gave up: {why}", now)
            return Status.FAILED, pending

        def work(db: sqlite3.Connection) -> tuple[Status, int]:
            db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, next_attempt = ?, "
                "last_error = ?, claimed = 0, updated = ? "
                "WHERE webhook_id = ? AND endpoint = ? AND status = 'pending'",
                (now + delay_s, error, now, delivery.webhook_id, delivery.endpoint),
            )
            return Status.PENDING, self._pending(db, delivery.endpoint)

        return self._transaction(work)

    async def disable(
        self,
        endpoint: str,
        fingerprint: str,
        reason: str,
        attempted: Delivery | None = None,
        now: float | None = None,
    ) -> int:
        """Mark ``endpoint`` disabled (for this URL fingerprint) and its pending
        deliveries with it (``attempted`` counts the attempt that was answered so);
        how many deliveries were pending."""
        when = time.time() if now is None else now
        return await self._run(self._disable, endpoint, fingerprint, reason, attempted, when)

    def _disable(
        self, endpoint: str, fingerprint: str, reason: str, attempted: Delivery | None, now: float
    ) -> int:
        def work(db: sqlite3.Connection) -> int:
            if attempted is not None:
                db.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, last_error = ? "
                    "WHERE webhook_id = ? AND endpoint = ? AND status = 'pending'",
                    (reason, attempted.webhook_id, endpoint),
                )
            db.execute(
                "INSERT INTO endpoints (name, fingerprint, disabled_at, reason) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "fingerprint = excluded.fingerprint, disabled_at = excluded.disabled_at, "
                "reason = excluded.reason",
                (endpoint, fingerprint, now, reason),
            )
            return db.execute(
                "UPDATE deliveries SET status = 'disabled', claimed = 0, updated = ?, "
                "last_error = coalesce(last_error, ?) WHERE endpoint = ? AND status = 'pending'",
                (now, reason, endpoint),
            ).rowcount

        return self._transaction(work)

    async def deliveries(self, endpoint: str | None = None) -> list[Delivery]:
        """Every delivery kept (of ``endpoint``), oldest first: for inspection and tests."""
        return await self._run(self._deliveries, endpoint)

    def _deliveries(self, endpoint: str | None) -> list[Delivery]:
        query = f"SELECT {COLUMNS} FROM deliveries"
        args: tuple[str, ...] = ()
        if endpoint is not None:
            query, args = query + " WHERE endpoint = ?", (endpoint,)
        rows = self._conn().execute(query + " ORDER BY created, rowid", args).fetchall()
        return [_delivery(row) for row in rows]

    async def prune(self, now: float | None = None) -> int:
        """Delete finished deliveries older than ``history_s``; how many."""
        return await self._run(
            lambda: self._transaction(
                lambda db: self._prune(db, time.time() if now is None else now)
            )
        )

    def _prune(self, db: sqlite3.Connection, now: float) -> int:
        return db.execute(
            "DELETE FROM deliveries WHERE status != 'pending' AND updated < ?",
            (now - self.history_s,),
        ).rowcount

    async def close(self) -> None:
        """Close the database and stop the outbox thread; the outbox is not used again."""

        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(close)
        self._executor.shutdown(wait=False)


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        webhook_id=row["webhook_id"],
        endpoint=row["endpoint"],
        event_type=row["event_type"],
        body=row["body"],
        created=row["created"],
        attempts=row["attempts"],
        next_attempt=row["next_attempt"],
        status=Status(row["status"]),
        last_error=row["last_error"],
    )
