"""Graceful shutdown of ``fakewatch serve`` as a real process.

SIGTERM reaches a service watching five looping face streams (each alerting: the vote
thresholds are set low, so a real face's score raises an alert) with more than a
hundred webhook deliveries pending (the receiver answers 503, so every delivery stays
in the SQLite outbox; the stream.up events of streams added and removed through the
API make the hundred). The process must exit 0 within 15 s, having queued a final
``deepfake.cleared`` ("service stopping") for every alerting stream. A second process
on the same state folder, with the receiver answering 200, must then deliver every
delivery that was pending: none lost, none twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import yaml

from tests.support.media import face_clip, write_video
from tests.support.webhooks import Receiver, Reply, new_secret

TOKEN = "shutdown-test-token-0123456789"
STREAMS = 5
PENDING = 100
EXIT_LIMIT_S = 15.0
CHURN = 10  # streams added (and removed) at once to make stream.up events


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """Six seconds of a real face at 640x480 (a local file each source loops), drifting
    there and back so that a loop does not jump: the face keeps its track and its alert."""
    path = tmp_path_factory.mktemp("shutdown") / "face.mp4"
    there = face_clip(astronaut, 30, (640, 480))
    return write_video(path, there + there[::-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    path: Path, state: Path, port: int, receiver: Receiver, streams: list[dict[str, str]]
) -> Path:
    config = {
        "server": {"port": port, "token": TOKEN, "shutdown_timeout_s": 10},
        "sources": {"allow_local_files": True},
        "limits": {"max_streams": STREAMS + CHURN},
        # a real face scores above these: every stream raises an alert and keeps it
        "vote": {
            "enter_threshold": 0.05,
            "exit_threshold": 0.04,
            "cooldown_s": 0,
            "min_frames": 3,
            "window_frames": 4,
        },
        "evidence": {"folder": str(state / "evidence")},
        "webhooks": {
            "endpoints": [
                {
                    "name": "ops",
                    "url": f"{receiver.url}/hook",
                    "secrets": receiver.secrets,
                    "allow_private": True,
                }
            ],
            "outbox": str(state / "outbox.sqlite3"),
            "initial_backoff_s": 0.2,
            "max_backoff_s": 1.0,
            "max_attempts": 1000,
        },
        "streams": streams,
    }
    path.write_text(yaml.safe_dump(config))
    return path


class Process:
    """``fakewatch serve --config`` in its own session (as a terminal would run it)."""

    def __init__(self, config: Path, log: Path, port: int) -> None:
        self.config, self.log, self.port = config, log, port
        self.base = f"http://127.0.0.1:{port}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fakewatch.cli.main",
                "serve",
                "--config",
                str(self.config),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.returncode is None, self.tail()
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{self.base}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise AssertionError(f"not ready within {timeout} s\n{self.tail()}")

    async def stop(self, sig: signal.Signals, limit: float = 30) -> tuple[int, float]:
        """Send ``sig`` (to the whole session, as a terminal's Ctrl-C does); the exit code
        and the seconds until the process ended."""
        assert self.process is not None
        started = time.monotonic()
        os.killpg(self.process.pid, sig)
        try:
            code = await asyncio.wait_for(self.process.wait(), limit)
        except TimeoutError:
            os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
            message = f"no exit within {limit} s after {sig.name}\n{self.tail()}"
            raise AssertionError(message) from None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver([new_secret()])
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


def outbox_rows(path: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT webhook_id, event_type, body, status FROM deliveries").fetchall()
        return [dict(row) for row in rows]


async def streams(http: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/api/streams") as response:
        assert response.status == 200
        return list((await response.json())["streams"])


async def wait_streams(
    http: aiohttp.ClientSession, base: str, check: Any, what: str, timeout: float = 30
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = await streams(http, base)
        if check(found):
            return found
        summary = [(s["name"], s["status"], s["alerting"], s["score"]) for s in found]
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {summary}"
        await asyncio.sleep(0.2)


async def churn(http: aiohttp.ClientSession, base: str, clip: Path, round_: int) -> None:
    """Add ``CHURN`` streams at once, wait until each is up (one stream.up each), remove
    them."""
    names = [f"churn-{round_}-{i}" for i in range(CHURN)]

    async def add(name: str) -> str:
        body = {"url": str(clip), "name": name}
        async with http.post(f"{base}/api/streams", json=body) as response:
            assert response.status == 201, await response.text()
            return str((await response.json())["id"])

    ids = await asyncio.gather(*(add(name) for name in names))
    await wait_streams(
        http,
        base,
        lambda found: sum(s["name"] in names and s["status"] == "up" for s in found) == CHURN,
        f"round {round_} up",
    )
    for stream_id in ids:
        async with http.delete(f"{base}/api/streams/{stream_id}") as response:
            assert response.status == 204


@pytest.mark.reliability
def test_sigterm_closes_alerts_and_keeps_every_pending_webhook_for_the_next_start(
    tmp_path: Path, clip: Path
) -> None:
    state = tmp_path / "state"
    outbox = state / "outbox.sqlite3"
    live = [{"name": f"cam{i}", "url": str(clip)} for i in range(STREAMS)]

    async def check(receiver: Receiver) -> None:
        receiver.fixed["/hook"] = Reply(503)  # everything stays pending
        port = free_port()
        first = Process(
            write_config(tmp_path / "first.yaml", state, port, receiver, live),
            tmp_path / "first.log",
            port,
        )
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            try:
                await first.start()
                await first.wait_ready(http)
                await wait_streams(
                    http,
                    first.base,
                    lambda found: (
                        len(found) == STREAMS
                        and all(s["status"] == "up" and s["alerting"] for s in found)
                    ),
                    "five streams up and alerting",
                )
                round_ = 0
                while sum(r["status"] == "pending" for r in outbox_rows(outbox)) < PENDING:
                    await churn(http, first.base, clip, round_)
                    round_ += 1
                    assert round_ < 20, "the churn does not make enough events"
                alerting = {s["name"] for s in await streams(http, first.base) if s["alerting"]}
                before = outbox_rows(outbox)
                code, seconds = await first.stop(signal.SIGTERM)
            finally:
                first.kill()
        after = outbox_rows(outbox)
        pending = {r["webhook_id"] for r in after if r["status"] == "pending"}
        final = {
            json.loads(r["body"])["data"]["stream"]["name"]: r["webhook_id"]
            for r in after
            if r["event_type"] == "deepfake.cleared"
            and json.loads(r["body"])["data"]["detail"] == "service stopping"
        }
        attempts = len(receiver.requests)
        print(
            f"\nSIGTERM with {STREAMS} live streams ({len(alerting)} alerting) and "
            f"{len(before)} pending webhooks ({round_} add/remove rounds of {CHURN}): exit "
            f"code {code} after {seconds:.2f} s; {len(pending)} pending in the outbox after "
            f"exit, {len(final)} final 'service stopping' clears; {attempts} attempts "
            "answered 503 meanwhile"
        )
        assert code == 0, first.tail()
        assert seconds < EXIT_LIMIT_S
        assert len(pending) >= PENDING
        assert {r["webhook_id"] for r in before} <= pending  # none lost, none given up
        assert all(r["status"] == "pending" for r in after)
        assert alerting == {s["name"] for s in live}
        assert set(final) == alerting, f"final clears for {sorted(final)}"
        assert "service.stopped" in first.log.read_text()

        # the next start on the same state folder, the receiver back: all delivered once
        receiver.fixed["/hook"] = Reply(200)
        seen = len(receiver.requests)
        port = free_port()
        second = Process(
            write_config(tmp_path / "second.yaml", state, port, receiver, []),
            tmp_path / "second.log",
            port,
        )
        async with aiohttp.ClientSession(headers=headers) as http:
            try:
                started = time.monotonic()
                await second.start()
                await second.wait_ready(http)
                await receiver.wait(lambda r: pending <= {q.id for q in r.delivered()}, timeout=30)
                drained = time.monotonic() - started
                code2, seconds2 = await second.stop(signal.SIGTERM)
            finally:
                second.kill()
        delivered = [r for r in receiver.requests[seen:] if 200 <= r.status < 300]
        counts = Counter(r.id for r in delivered)
        duplicates = sum(n - 1 for n in counts.values())
        print(
            f"restart: {len(pending)} pending delivered in {drained:.2f} s from the start of "
            f"the second process; {len(delivered)} deliveries, {len(counts)} distinct ids, "
            f"{duplicates} duplicates, {len(pending - set(counts))} lost; second exit code "
            f"{code2} after {seconds2:.2f} s"
        )
        assert pending <= set(counts)
        assert duplicates == 0
        assert all(any(r.verified) for r in delivered)
        assert set(final.values()) <= set(counts)
        assert code2 == 0 and seconds2 < EXIT_LIMIT_S
        finished = outbox_rows(outbox)
        assert all(r["status"] == "delivered" for r in finished if r["webhook_id"] in pending)

    async def main() -> None:
        async with receiving() as receiver:
            await check(receiver)

    asyncio.run(main())


@pytest.mark.reliability
def test_ctrl_c_stops_the_service_cleanly(tmp_path: Path, clip: Path) -> None:
    """What ``make demo`` gets on Ctrl-C: SIGINT to the whole session."""
    state = tmp_path / "state"

    async def main() -> None:
        async with receiving() as receiver:
            port = free_port()
            live = [{"name": "cam", "url": str(clip)}]
            process = Process(
                write_config(tmp_path / "cfg.yaml", state, port, receiver, live),
                tmp_path / "serve.log",
                port,
            )
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                try:
                    await process.start()
                    await process.wait_ready(http)
                    await wait_streams(
                        http, process.base, lambda f: f and f[0]["status"] == "up", "up"
                    )
                    code, seconds = await process.stop(signal.SIGINT)
                finally:
                    process.kill()
            log = process.log.read_text()
            print(f"\nCtrl-C: exit code {code} after {seconds:.2f} s")
            assert code == 0, process.tail()
            assert seconds < EXIT_LIMIT_S
            assert "Traceback" not in log, process.tail()
            assert "service.stopped" in log

    asyncio.run(main())
