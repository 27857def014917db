"""The typed client and the CLI verbs on it, against a running service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fakewatch.cli.main import main
from fakewatch.stream.http.client import ApiError, AsyncClient, Client
from tests.stream.test_evidence import suspected
from tests.support.media import face_clip, write_video
from tests.support.service import TOKEN, ServiceThread


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("clips") / "face.mp4"
    return write_video(path, face_clip(astronaut, 30, (320, 240)))


@pytest.fixture
def service() -> Iterator[ServiceThread]:
    running = ServiceThread().start()
    try:
        yield running
    finally:
        running.close()


def _cli(capsys: pytest.CaptureFixture[str], service: ServiceThread, *args: str) -> str:
    status = main([*args, "--url", service.base])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def test_the_cli_lists_adds_and_removes_streams(
    service: ServiceThread,
    clip: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert main(["streams", "list", "--url", service.base]) == 1  # no token
    assert "bearer token" in capsys.readouterr().err
    monkeypatch.setenv("FAKEWATCH_TOKEN", TOKEN)
    added = _cli(capsys, service, "streams", "add", str(clip), "--name", "lobby")
    assert added.split()[1] == "lobby"
    out = _cli(capsys, service, "streams", "list", "--json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert [s["name"] for s in listed] == ["lobby"]
    assert main(["streams", "add", str(clip), "--name", "lobby", "--url", service.base]) == 1
    assert "HTTP 409" in capsys.readouterr().err
    shown = json.loads(_cli(capsys, service, "streams", "set", "lobby", "fps=2", "adaptive=false"))
    assert shown["effective"]["fps"] == 2 and shown["effective"]["adaptive"] is False
    assert shown["overridden"] == {"adaptive": "api", "fps": "api"}
    assert main(["streams", "set", "lobby", "fps=0", "--url", service.base]) == 1
    assert '"fps"' in capsys.readouterr().err  # the bad key is named
    assert main(["streams", "set", "lobby", "colour=red", "--url", service.base]) == 1
    assert "unknown fields: colour" in capsys.readouterr().err
    _cli(capsys, service, "streams", "rm", "lobby")
    assert _cli(capsys, service, "streams", "list") == ""
    assert main(["streams", "rm", "lobby", "--url", service.base]) == 1
    assert "no stream 'lobby'" in capsys.readouterr().err


def test_the_cli_reviews_alerts_and_follows_events(
    service: ServiceThread,
    astronaut: np.ndarray,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = suspected(astronaut), suspected(astronaut)

    async def emit(event: object) -> None:
        for sink in service.service.pipeline.sinks:
            await sink.emit(event)  # type: ignore[arg-type]

    service.call(emit(first))
    out = _cli(capsys, service, "events", "--token", TOKEN)
    assert first.id in out and "deepfake.suspected" in out
    verdict = ("false_positive", "--note", "a poster", "--token", TOKEN)
    out = _cli(capsys, service, "review", first.id, *verdict)
    assert "[false_positive]" in out
    assert main(["review", "0" * 32, "confirmed", "--url", service.base, "--token", TOKEN]) == 1
    assert "no alert" in capsys.readouterr().err

    # --follow prints the events already there, then the new ones as they come
    service.call(emit(second))
    monkeypatch.setenv("FAKEWATCH_TOKEN", TOKEN)
    out = _cli(capsys, service, "events", "--follow", "--json", "--every", "0.1", "--count", "2")
    followed = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in followed] == [first.id, second.id]
    assert followed[0]["review"]["note"] == "a poster"


def test_the_client_answers_with_the_api_models(service: ServiceThread, clip: Path) -> None:
    api = Client(service.base, TOKEN)
    added = api.add_stream(str(clip), "door")
    assert api.stream("door").id == added.id
    changed = api.update_stream("door", {"enter_threshold": 0.97, "exit_threshold": 0.95})
    assert changed.settings is not None and changed.settings.effective["enter_threshold"] == 0.97
    back = api.update_stream("door", {"enter_threshold": None, "exit_threshold": None})
    assert back.settings is not None and back.settings.overridden == {}
    assert [s.name for s in api.streams()] == ["door"]
    with pytest.raises(ApiError) as raised:
        api.add_stream(str(clip), "door")
    assert raised.value.status == 409
    api.remove_stream(added.id)

    async def run() -> None:
        async with AsyncClient(service.base, TOKEN) as client:
            assert await client.streams() == []
            assert {e.stream.name for e in await client.events()} <= {"door"}
        async with AsyncClient(service.base, "wrong") as client:
            with pytest.raises(ApiError) as raised:
                await client.events()
            assert raised.value.status == 401

    asyncio.run(run())


def test_streams_set_reads_key_value_pairs_as_yaml() -> None:
    from fakewatch.cli.api_commands import settings_of

    assert settings_of(["vote.enter_threshold=0.8", "paused=true", "note=a b"]) == {
        "vote.enter_threshold": 0.8,
        "paused": True,
        "note": "a b",
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        settings_of(["novalue"])
