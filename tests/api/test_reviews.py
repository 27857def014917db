"""A person's review of an alert: validated, kept beside the evidence, listed with the
event, and still there after a restart; the events cursor."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np

from fakewatch.stream.analysis.events import Event, EventType
from tests.stream.test_evidence import suspected
from tests.support.service import serving


def test_a_review_is_checked_kept_and_survives_a_restart(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    alert, other = suspected(astronaut), suspected(astronaut, score=0.97)

    async def run() -> None:
        async with serving(tmp_path) as service:
            for event in (alert, other):
                for sink in service.pipeline.sinks:
                    await sink.emit(event)
            http = service.http
            review = f"/api/events/{alert.id}/review"
            async with http.post(review, json={"verdict": "maybe"}) as response:
                assert response.status == 400
                assert "verdict" in (await response.json())["error"]
            async with http.post(review, json={"verdict": "confirmed", "note": "x" * 5000}) as r:
                assert r.status == 400 and "note" in (await r.json())["error"]
            async with http.post(review, json={"note": "?"}) as response:
                assert response.status == 400
                assert '"verdict" is required' in (await response.json())["error"]
            unknown = "/api/events/0123456789abcdef0123456789abcdef/review"
            async with http.post(unknown, json={"verdict": "confirmed"}) as response:
                assert response.status == 404
            async with http.post(
                review, json={"verdict": "false_positive", "note": "the presenter's own face"}
            ) as response:
                assert response.status == 200
                answered = await response.json()
            assert answered["id"] == alert.id
            assert answered["review"]["verdict"] == "false_positive"
            kept = json.loads((tmp_path / "evidence" / alert.id / "review.json").read_text())
            assert kept["note"] == "the presenter's own face"
            async with http.get("/api/events") as response:
                listed = {e["id"]: e for e in (await response.json())["events"]}
            assert listed[alert.id]["review"]["verdict"] == "false_positive"
            assert listed[other.id].get("review") is None
        async with serving(tmp_path) as service:  # a restart on the same folders
            async with service.http.get("/api/events") as response:
                listed = {e["id"]: e for e in (await response.json())["events"]}
            assert listed[alert.id]["review"]["verdict"] == "false_positive"
            async with service.http.post(
                f"/api/events/{other.id}/review", json={"verdict": "confirmed"}
            ) as response:
                assert response.status == 200
                assert (await response.json())["review"]["note"] == ""

    asyncio.run(run())


def test_events_after_a_cursor_are_the_newer_ones() -> None:
    events = [Event(EventType.STREAM_UP, "s1", "door", "x") for _ in range(4)]

    async def run() -> None:
        async with serving() as service:
            for event in events:
                await service.host.sinks.recent.emit(event)
            ids = [e.id for e in events]

            async def listed(query: str) -> list[str]:
                async with service.http.get(f"/api/events{query}") as response:
                    assert response.status == 200, await response.text()
                    return [e["id"] for e in (await response.json())["events"]]

            assert await listed(f"?after={ids[1]}") == [ids[3], ids[2]]
            assert await listed(f"?after={ids[3]}") == []
            assert await listed(f"?after={ids[1]}&limit=1") == [ids[3]]
            assert (await listed("?after=gone"))[:4] == ids[::-1]
            for query in ("limit=0", "limit=x", "stream=a&stream=b", "colour=red"):
                async with service.http.get(f"/api/events?{query}") as response:
                    assert response.status == 400, query
                    assert query.split("=")[0] in (await response.json())["error"], query

    asyncio.run(run())
