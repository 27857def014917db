"""The settings streams were given through the API, kept across restarts by stream name.

:class:`SavedSettings` is what the registry needs; :class:`SQLiteSavedSettings` keeps
them in a small SQLite table in the service's state folder (next to the webhook
outbox), :class:`MemorySavedSettings` for as long as the process runs (a cluster shard,
whose front answers the settings routes with 501). The SQLite calls run on a thread of
their own, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_settings (
    name TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    updated REAL NOT NULL
)
"""


class SavedSettings(Protocol):
    """Settings given through the API, by stream name."""

    async def load(self, name: str) -> dict[str, Any]:
        """The settings saved for ``name`` (empty when none)."""
        ...

    async def save(self, name: str, settings: dict[str, Any]) -> None:
        """Replace the settings saved for ``name`` (empty: forget them)."""
        ...

    async def close(self) -> None: ...


class MemorySavedSettings:
    """:class:`SavedSettings` in this process only."""

    def __init__(self) -> None:
        self.saved: dict[str, dict[str, Any]] = {}

    async def load(self, name: str) -> dict[str, Any]:
        return dict(self.saved.get(name, {}))

    async def save(self, name: str, settings: dict[str, Any]) -> None:
        if settings:
            self.saved[name] = dict(settings)
        else:
            self.saved.pop(name, None)

    async def close(self) -> None:
        pass


class SQLiteSavedSettings:
    """:class:`SavedSettings` in the SQLite file ``path`` (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="stream-settings")

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=5000")
            db.execute(SCHEMA)
            self._db = db
        return self._db

    async def _run(self, work: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    def _load(self, name: str) -> dict[str, Any]:
        with self._lock:
            row = (
                self._open()
                .execute("SELECT settings FROM stream_settings WHERE name = ?", (name,))
                .fetchone()
            )
        if row is None:
            return {}
        loaded = json.loads(row[0])
        return loaded if isinstance(loaded, dict) else {}

    def _save(self, name: str, settings: dict[str, Any]) -> None:
        with self._lock:
            db = self._open()
            if settings:
                db.execute(
                    "INSERT INTO stream_settings (name, settings, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET settings = excluded.settings, "
                    "updated = excluded.updated",
                    (name, json.dumps(settings, sort_keys=True), time.time()),
                )
            else:
                db.execute("DELETE FROM stream_settings WHERE name = ?", (name,))

    async def load(self, name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = await self._run(self._load, name)
        return loaded

    async def save(self, name: str, settings: dict[str, Any]) -> None:
        await self._run(self._save, name, dict(settings))

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None

        await self._run(close)
        self._thread.shutdown(wait=False)
