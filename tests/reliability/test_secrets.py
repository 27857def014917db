"""Secrets: stream passwords, query tokens and the evidence link key never appear
anywhere the service shows.

A real RTSP server asks for basic auth; the service watches it with the password and a
``?token=`` secret in the URL, with a wrong password (an error path that quotes the URL),
and at a closed port (another), and the server restarts once (down, reconnect, up). A
low alert threshold makes an alert with evidence, and a webhook receiver gets the events.
Everything is then searched for the secrets: every log line at debug level (text and
JSON), whatever reached the process's stdout and stderr (FFmpeg's own messages too), every
API answer, the metrics, the evidence files and the outbox on disk, the webhook requests
and the evidence their signed links open, and the output of ``fakewatch serve
--print-config`` and ``fakewatch scan`` (the roboflow pattern: whatever path leads there).
A TURN server's password (``webrtc.ice_servers``, a real coturn the service relays
through) is searched for too, after a WHIP publisher has been answered with its relay:
the publisher page's ICE servers, the WebRTC stream's state and the printed
configuration must not show it; so is the key that signs evidence links.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import yaml

from fakewatch.cli.main import main
from fakewatch.stream.analysis.events import EventType
from fakewatch.stream.http.views import stream_view
from fakewatch.stream.logs import LOGGER_NAME, configure_logging
from fakewatch.stream.rtsp_camera import RtspCamera
from tests.support.media import face_clip, write_video
from tests.support.peers import free_port
from tests.support.rtsp import require_rtsp_server
from tests.support.service import TOKEN, serving
from tests.support.turn import turn_server
from tests.support.webhooks import endpoint, hooks, receiving
from tests.support.webrtc import publish_whip

CONFIGURED_LOGGERS = (LOGGER_NAME, "aiohttp.access", "aiortc", "aioice")


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """Undo what ``configure_logging`` (the CLI calls it) does to the loggers it sets."""
    saved = [
        (logger, logger.handlers[:], logger.propagate, logger.level)
        for logger in map(logging.getLogger, CONFIGURED_LOGGERS)
    ]
    try:
        yield
    finally:
        for logger, handlers, propagate, level in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)


USER = "camuser-k3"
PASSWORD = "pw-Zq8sK1x9"
WRONG_PASSWORD = "pw-Wr0ngX7"
QUERY_TOKEN = "tok-7Hc2mRv4"
TURN_USER = "turn-user-p2"
TURN_PASSWORD = "turnpw-Gd5xL0q8"
LINK_KEY = "lk-Vb5nQ2xW8pR3tY6u"
SECRETS = (USER, PASSWORD, WRONG_PASSWORD, QUERY_TOKEN, TURN_PASSWORD, LINK_KEY)


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """Three seconds of a real face at 10 fps, 640x480."""
    path = tmp_path_factory.mktemp("clips") / "face.mp4"
    return write_video(path, face_clip(astronaut, 30, (640, 480)))


class Places:
    """Every text the service showed, by where it showed it."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("latin-1")
        assert where not in self.texts, where
        self.texts[where] = text

    def leaks(self) -> list[tuple[str, str, str]]:
        found = []
        for where, text in self.texts.items():
            for secret in SECRETS:
                at = text.find(secret)
                if at >= 0:
                    found.append((where, secret, text[max(0, at - 120) : at + 40]))
        return found


@pytest.mark.reliability
@pytest.mark.peer
def test_stream_passwords_and_tokens_never_appear_anywhere(
    face_video: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    require_rtsp_server()
    places = Places()
    json_logs, text_logs = io.StringIO(), io.StringIO()
    turn_folder = tmp_path / "turn"
    turn_folder.mkdir()
    with (
        RtspCamera(face_video, user=USER, password=PASSWORD) as server,
        turn_server(turn_folder, TURN_USER, TURN_PASSWORD) as turn,
    ):
        server.start()
        ice_servers = [
            {"urls": turn.stun_url},
            {"urls": turn.turn_url, "username": TURN_USER, "credential": TURN_PASSWORD},
        ]
        url = f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{server.port}/live?token={QUERY_TOKEN}"
        wrong = url.replace(PASSWORD, WRONG_PASSWORD)
        closed = f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/live?token={QUERY_TOKEN}"
        with restored_logging():
            configure_logging("debug", json_lines=False, stream=text_logs)
            text_handler = logging.getLogger(LOGGER_NAME).handlers[0]
            configure_logging("debug", json_lines=True, stream=json_logs)
            for name in CONFIGURED_LOGGERS:
                logging.getLogger(name).addHandler(text_handler)
            asyncio.run(_watch(server, url, wrong, closed, tmp_path, places, ice_servers))
        places.add("logs, text, debug", text_logs.getvalue())
        places.add("logs, JSON, debug", json_logs.getvalue())
        assert '"event": "source.error"' in json_logs.getvalue()  # the error paths ran
        assert "stream.down" in text_logs.getvalue() and "stream.up" in text_logs.getvalue()
        out, err = capfd.readouterr()
        places.add("stdout and stderr of the process (FFmpeg's too)", out + err)

        config_file = _config_file(tmp_path, url, ice_servers)
        for argv in (
            ["serve", "--print-config", "--stream", f"door={url}"],
            ["serve", "--print-config", "--config", str(config_file)],
        ):
            assert main(argv) == 0
            out, err = capfd.readouterr()
            assert "rtsp://***@127.0.0.1:" in out and "token=***" in out
            places.add(f"fakewatch {' '.join(argv[:2])} {argv[2]}", out + err)
        with restored_logging():
            status = main(["scan", wrong, "--seconds", "1", "--quiet"])
        out, err = capfd.readouterr()
        places.add("fakewatch scan with a wrong password", out + err)
        assert status in (0, 2), (out, err)

    leaks = places.leaks()
    assert not leaks, leaks
    kinds = Counter(where.split()[0].rstrip(",") for where in places.texts)
    with capfd.disabled():
        print(
            f"\nsecrets: {len(places.texts)} places checked "
            f"({sum(len(t) for t in places.texts.values())} characters), 0 leaks of the user "
            f"name, password, wrong password, ?token= value, TURN password or link key; "
            f"places by kind: {dict(kinds)}"
        )


def _config_file(folder: Path, url: str, ice_servers: list[dict[str, str]]) -> Path:
    path = folder / "fakewatch.yaml"
    config = {
        "streams": [{"name": "door", "url": url}],
        "webrtc": {"ice_servers": ice_servers},
        "evidence": {"link_key": LINK_KEY},
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def _watch(
    server: RtspCamera,
    url: str,
    wrong: str,
    closed: str,
    state: Path,
    places: Places,
    ice_servers: list[dict[str, str]],
) -> None:
    async with receiving() as receiver:
        settings = {
            **hooks(endpoint(receiver)),
            "vote.enter_threshold": 0.02,  # an alert on a real face: its evidence is checked
            "vote.exit_threshold": 0.01,
            "vote.min_frames": 2,
            "evidence.link_key": LINK_KEY,  # signs the webhook's evidence links
            "sources.reconnect_initial_s": 0.2,
            "sources.reconnect_max_s": 1.0,
            "webrtc.ice_servers": ice_servers,
        }
        async with serving(state, **settings) as service:
            caller = await publish_whip(
                f"{service.base}/api/whip?name=caller", clip=server.clip, token=TOKEN
            )
            assert " typ relay" in caller.answer_sdp  # the service used the TURN password
            door = await service.add(url, "door")
            bad = await service.add(wrong, "wrong")
            gone = await service.add(closed, "closed")
            for refused in (f"rtsps://{USER}:{PASSWORD}@/live?token={QUERY_TOKEN}",
                            f"{url}\r\nX: y", f"gopher://{USER}:{PASSWORD}@cam/x"):  # fmt: skip
                async with service.http.post("/api/streams", json={"url": refused}) as response:
                    assert response.status == 400
                    places.add(
                        f"POST /api/streams 400 ({len(places.texts)})", await response.text()
                    )
            await service.events.wait_for(EventType.SUSPECTED, door, timeout=30)
            for stream in (bad, gone):
                await service.wait_state(stream, lambda s: bool(s["status_detail"]), timeout=20)
            server.restart()  # down, and back on the same URL
            await service.events.wait_for(EventType.STREAM_DOWN, door, timeout=30)
            await service.events.wait_for(EventType.STREAM_UP, door, count=2, timeout=40)
            await receiver.wait(lambda r: len(r.delivered()) >= 3, timeout=20)

            paths = ["/api/streams", "/api/events", "/api/events?stream=door", "/metrics",
                     "/healthz", "/readyz", "/api/webrtc/ice-servers",
                     "/api/streams/caller"]  # fmt: skip
            for stream_id in (door, bad, gone):
                paths += [f"/api/streams/{stream_id}"]
            paths += ["/api/streams/door", "/api/streams/wrong"]
            for path in paths:
                async with service.http.get(path) as response:
                    assert response.status == 200, path
                    places.add(f"GET {path}", await response.text())
            events = (await (await service.http.get("/api/events")).json())["events"]
            for event in events:
                for name, link in event.get("evidence_urls", {}).items():
                    async with service.http.get(link) as response:
                        places.add(f"evidence {name} of {event['id']}", await response.read())
            async with aiohttp.ClientSession() as anon:  # a receiver opens the signed links
                for request in receiver.delivered():
                    for name, link in request.json()["data"].get("evidence_urls", {}).items():
                        async with anon.get(link) as response:
                            assert response.status in (200, 404), (name, response.status)
                            where = f"signed {name} of {request.id} ({len(places.texts)})"
                            places.add(where, await response.read())
            places.add(
                "events handed to sinks",
                json.dumps([e.to_dict() for e in service.events.events]),
            )
            states = {sid: service.pipeline.streams[sid] for sid in (door, bad, gone)}
            places.add("stream snapshots", json.dumps([stream_view(s) for s in states.values()]))
            places.add("source descriptions", " ".join(s.description for s in states.values()))
            assert states[bad].source is not None
            places.add("sources' last errors", " ".join(
                str(getattr(s.source, "last_error", "")) for s in states.values()
            ))  # fmt: skip
            webrtc = service.pipeline.find("caller")
            assert webrtc is not None
            places.add("WebRTC stream snapshot", json.dumps(stream_view(webrtc)))
            await caller.close()
        for request in receiver.requests:
            places.add(
                f"webhook {request.id} attempt at {request.time}",
                json.dumps(request.headers) + request.body.decode(),
            )
    evidence_files = sorted(p for p in (state / "evidence").rglob("*") if p.is_file())
    assert any(p.name == "event.json" for p in evidence_files), evidence_files
    for path in evidence_files:
        places.add(f"evidence file {path.relative_to(state)}", path.read_bytes())
    for path in sorted(state.glob("outbox.sqlite3*")):
        places.add(f"outbox file {path.name}", path.read_bytes())
