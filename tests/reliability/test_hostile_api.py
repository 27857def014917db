"""Hostile API input: every bad request gets a clear JSON error, and the service keeps
analysing the streams it watches throughout.

One service watches a live face stream and four odd ones (frames over the size limit,
16x16, 1x1 and a 640x8 strip) while a barrage of requests arrives: every ``/api/`` route
of the app's router without or with a wrong token (401), bodies over the JSON limit and
over ``client_max_size`` (413, with and without Content-Length), malformed JSON and SDP
(400/415), bad query values, and streams past ``limits.max_streams`` (429). The live
stream's ``frames_analysed`` must grow across it, and no request may end in a 500.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from fakewatch.cli.main import main
from fakewatch.engines.faces import RetinaFaceDetector
from fakewatch.stream.config import ConfigError, load_config
from fakewatch.stream.http.schemas import MAX_JSON_BYTES
from tests.reliability.test_secrets import restored_logging
from tests.support.media import face_clip, write_video
from tests.support.service import TOKEN, Service, serving

CLIENT_MAX_SIZE = 1024 * 1024
BARRAGE_S = 5.0
JSON = {"Content-Type": "application/json"}
SDP = {"Content-Type": "application/sdp"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")

    def flat(width: int, height: int, count: int = 20) -> list[np.ndarray]:
        return [np.full((height, width, 3), 40 + 9 * i, np.uint8) for i in range(count)]

    return {
        "live": write_video(folder / "live.mp4", face_clip(astronaut, 30, (640, 480))),
        "big": write_video(folder / "big.mp4", face_clip(astronaut, 10, (1280, 720))),
        "tiny16": write_video(folder / "tiny16.mp4", flat(16, 16)),
        "tiny1": write_video(folder / "tiny1.mp4", flat(1, 1), pix_fmt="yuv444p"),
        "strip": write_video(folder / "strip.mp4", flat(640, 8)),
    }


class Tally:
    """Responses by category; every one must be a JSON error with the expected status."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.counts: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()

    async def expect(
        self, category: str, status: int, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any]:
        async with self.http.request(method, path, **kwargs) as response:
            text = await response.text()
            self.statuses[response.status] += 1
            assert response.status == status, (category, method, path, response.status, text)
            self.counts[category] += 1
            if method == "HEAD":
                return {}
            assert response.content_type == "application/json", (category, path, text)
            body: dict[str, Any] = await response.json()
            assert isinstance(body.get("error"), str) and body["error"], (category, path, body)
            return body


async def chunks(size: int, piece: int = 16384) -> AsyncIterator[bytes]:
    """A body of ``size`` bytes sent chunked (no Content-Length)."""
    sent = 0
    while sent < size:
        yield b" " * min(piece, size - sent)
        sent += piece


def api_routes(service: Service) -> list[tuple[str, str]]:
    """``(method, path)`` of every ``/api/`` route of the app, placeholders filled."""
    found = []
    for route in service.host.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith("/api/"):
            found.append((route.method, re.sub(r"\{(\w+)\}", r"\1-x", path)))
    return sorted(set(found))


def bad_authorizations() -> dict[str, dict[str, str]]:
    basic = base64.b64encode(f"fakewatch:{TOKEN}".encode()).decode()
    return {
        "none": {},
        "empty": {"Authorization": ""},
        "wrong token": {"Authorization": "Bearer " + "x" * len(TOKEN)},
        "token prefix": {"Authorization": "Bearer " + TOKEN[:-1]},
        "token plus a byte": {"Authorization": f"Bearer {TOKEN}x"},
        "no scheme": {"Authorization": TOKEN},
        "basic auth": {"Authorization": f"Basic {basic}"},
        "two spaces": {"Authorization": f"Bearer  {TOKEN}"},
    }


@pytest.mark.reliability
def test_a_barrage_of_hostile_requests_gets_json_errors_while_streams_run(
    clips: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fakewatch")
    settings = {"limits.max_width": 640, "limits.max_height": 480, "limits.max_streams": 6}

    async def run() -> None:
        async with (
            serving(**settings) as service,
            aiohttp.ClientSession(base_url=service.base) as anon,
        ):
            ids = {name: await service.add(str(path), name) for name, path in clips.items()}
            live = ids["live"]
            await service.wait_state(live, lambda s: s["frames_analysed"] >= 3)
            progress = [(await service.state(live))["frames_analysed"]]

            async def phase(work: Callable[[], Awaitable[None]]) -> None:
                await work()
                progress.append((await service.state(live))["frames_analysed"])

            tally = Tally(service.http)
            unauthorised = Tally(anon)
            routes = api_routes(service)
            assert len({path for _, path in routes}) >= 7, routes

            async def tokens() -> None:
                for method, path in routes:
                    for headers in bad_authorizations().values():
                        body = await unauthorised.expect(
                            "401", 401, method, path, headers=headers, json={"url": "rtsp://x/y"}
                        )
                        if method != "HEAD":
                            assert "bearer token" in body["error"]
                # the token in the query string is not a token
                await unauthorised.expect("401", 401, "GET", f"/api/streams?token={TOKEN}")
                for path in ("/healthz", "/readyz", "/metrics", "/", "/publish"):
                    async with anon.get(path) as response:
                        assert response.status == 200, path

            async def oversized() -> None:
                big = CLIENT_MAX_SIZE * 2
                over = MAX_JSON_BYTES + 1
                for path in ("/api/streams", "/api/webrtc/offer"):
                    for size in (over, big):
                        await tally.expect("413", 413, "POST", path, data=b" " * size, headers=JSON)
                        await tally.expect(
                            "413", 413, "POST", path, data=chunks(size), headers=JSON
                        )
                await tally.expect("413", 413, "POST", "/api/whip", data=b"v" * big, headers=SDP)
                await tally.expect("413", 413, "POST", "/api/whip", data=chunks(big), headers=SDP)
                offer = "v=0\r\n" + "a=x\r\n" * 14000  # over limits.max_offer_bytes
                await tally.expect("413", 413, "POST", "/api/whip", data=offer, headers=SDP)

            async def malformed_json() -> None:
                bodies: list[str | bytes] = [
                    "",
                    "not json",
                    "{",
                    '{"url": }',
                    "[1, 2]",
                    '"a string"',
                    "null",
                    "NaN",
                    b'{"url": "\xff\xfe"}',
                    "[" * 30000 + "]" * 30000,  # deeper than the parser's recursion
                    '{"a": ' * 7000 + "1" + "}" * 7000,
                    '{"url": 5}',
                    '{"url": ["rtsp://cam/live"]}',
                    '{"url": "rtsp://cam/live", "name": 7}',
                    '{"url": "rtsp://cam/live", "name": "' + "n" * 5000 + '"}',
                    '{"url": "rtsp://cam/live", "name": "../../etc"}',
                    '{"url": "rtsp://cam/live", "extra": {"deep": [1, 2, 3]}}',
                    '{"url": "rtsp://cam/' + "p" * 60000 + '"}',
                ]
                for body in bodies:
                    await tally.expect("400", 400, "POST", "/api/streams", data=body, headers=JSON)
                for body in ('{"sdp": 5}', '{"type": "answer", "sdp": "v=0"}', "[]", "{"):
                    await tally.expect(
                        "400", 400, "POST", "/api/webrtc/offer", data=body, headers=JSON
                    )
                for path in ("/api/streams", "/api/webrtc/offer"):
                    for kind in ("text/plain", "application/x-www-form-urlencoded", ""):
                        await tally.expect(
                            "415", 415, "POST", path, data='{"url": "x"}',
                            headers={"Content-Type": kind},
                        )  # fmt: skip
                await tally.expect("415", 415, "POST", "/api/whip", data="v=0\r\n", headers=JSON)

            async def malformed_sdp() -> None:
                offers: list[str | bytes] = [
                    "",
                    "garbage",
                    "v=0\r\n",
                    b"\xff\xfe\x00\x01",
                    "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
                    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n",
                    "v=0\r\n" + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * 500,
                    "v=0\r\n" + "a=" + "x" * 60000 + "\r\n",
                    "\x00" * 1000,
                ]
                for offer in offers:
                    await tally.expect("400", 400, "POST", "/api/whip", data=offer, headers=SDP)
                    if isinstance(offer, str):
                        await tally.expect(
                            "400", 400, "POST", "/api/webrtc/offer",
                            json={"sdp": offer, "type": "offer"},
                        )  # fmt: skip

            async def queries() -> None:
                for limit in ("abc", "0", "-1", "1001", "1" + "0" * 40, "1.5", ""):
                    await tally.expect("400", 400, "GET", f"/api/events?limit={limit}")
                await tally.expect("404", 404, "GET", "/api/streams/" + "x" * 5000)
                await tally.expect("404", 404, "DELETE", "/api/streams/nope")
                await tally.expect("404", 404, "DELETE", "/api/whip/" + ids["live"])
                await tally.expect("404", 404, "GET", "/api/evidence/x/..%2F..%2Fetc%2Fpasswd")
                await tally.expect("404", 404, "GET", "/api/evidence/nope/frame.jpg")
                for query in (
                    "expires=99999999999&sig=x",
                    "expires=1e9&sig=",
                    "sig=%ff%fe",
                    "expires=" + "9" * 40 + "&sig=a",
                    "expires=1&expires=2&sig=a",
                ):
                    await tally.expect("403", 403, "GET", f"/api/evidence/nope/frame.jpg?{query}")
                await tally.expect("403", 403, "GET", "/api/streams?expires=99999999999&sig=x")
                await tally.expect("404", 404, "GET", "/static/..%2Fapi.py")
                await tally.expect("405", 405, "PUT", "/api/streams")

            async def too_many() -> None:
                extra = await service.add(str(clips["tiny16"]), "one-more")  # the 6th
                for _ in range(3):
                    await tally.expect(
                        "429", 429, "POST", "/api/streams",
                        json={"url": str(clips["live"]), "name": "seventh"},
                    )  # fmt: skip
                    await tally.expect(
                        "429", 429, "POST", "/api/whip?name=w", data="v=0\r\n", headers=SDP
                    )
                    await tally.expect(
                        "429", 429, "POST", "/api/webrtc/offer",
                        json={"sdp": "v=0\r\n", "type": "offer"},
                    )  # fmt: skip
                async with service.http.delete(f"/api/streams/{extra}") as response:
                    assert response.status == 204

            barrage_started, rounds = time.monotonic(), 0
            while rounds < 2 or time.monotonic() - barrage_started < BARRAGE_S:
                for work in (tokens, oversized, malformed_json, malformed_sdp, queries, too_many):
                    await phase(work)
                rounds += 1
            barrage_s = time.monotonic() - barrage_started

            assert set(service.pipeline.streams) == set(ids.values())  # nothing leaked in
            # analysis went on during the barrage, not only after it
            assert progress == sorted(progress) and progress[-1] >= progress[0] + 5, progress
            states = {name: await service.state(sid) for name, sid in ids.items()}
            big = states["big"]
            assert big["frames_dropped"].get("oversized", 0) >= 3, big
            assert big["frames_analysed"] == 0 and big["status"] != "up", big
            async with anon.get("/metrics") as response:
                metrics = await response.text()
            assert re.search(
                r'fakewatch_frames_dropped_total\{[^}]*stream="big"[^}]*\} [1-9]', metrics
            ), "oversized drops are counted in the metrics"
            for name in ("tiny16", "tiny1", "strip"):
                assert states[name]["frames_analysed"] >= 3, states[name]
                assert states[name]["status"] == "up", states[name]
            assert states["live"]["faces_analysed"] > 0

        errors = [r for r in caplog.records if r.getMessage() in ("frame.error", "api.error")]
        assert not errors, [(r.getMessage(), getattr(r, "fields", {})) for r in errors]
        assert all(status < 500 for status in tally.statuses | unauthorised.statuses)
        counts = tally.counts + unauthorised.counts
        print(
            f"\nhostile api: {sum(counts.values())} hostile requests in {rounds} rounds over "
            f"{barrage_s:.1f} s, by answer: "
            f"{dict(sorted(counts.items()))}; {len(routes)} /api/ routes x "
            f"{len(bad_authorizations())} bad authorizations all 401; 0 answered 5xx; "
            f"live stream frames_analysed {progress[0]} before, {progress[-1]} after "
            f"(never decreasing across {len(progress) - 1} phases); "
            f"oversized stream: {big['frames_dropped'].get('oversized')} frames dropped, "
            f"0 analysed; 16x16 / 1x1 / 640x8 streams analysed "
            f"{states['tiny16']['frames_analysed']} / {states['tiny1']['frames_analysed']} / "
            f"{states['strip']['frames_analysed']} frames without an error"
        )

    asyncio.run(run())


@pytest.mark.reliability
def test_tiny_and_degenerate_frames_do_not_break_face_detection() -> None:
    detector = RetinaFaceDetector(min_face=8)
    shapes = [(1, 1), (2, 2), (16, 16), (8, 640), (640, 8), (1, 3000), (3000, 1)]
    for height, width in shapes:
        assert detector.detect(np.full((height, width, 3), 128, np.uint8)) == []
    for bad in (np.zeros((0, 0, 3), np.uint8), np.zeros((16, 16), np.uint8)):
        with pytest.raises(ValueError):
            detector.detect(bad)
    print(f"\ntiny frames: {len(shapes)} shapes detected without error, 2 malformed refused")


@pytest.mark.reliability
def test_unknown_or_hostile_config_is_refused_with_the_key_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = {
        "analysis.colour": ("analysis.colour", 1),
        "nonsense.x": ("nonsense", 1),
        "limits.max_streems": ("limits.max_streems", 3),
        "server.token_file": ("server.token_file", "/etc/shadow"),
        "webhooks.endpoints": (
            "webhooks.endpoints.0.retries",
            [{"name": "a", "url": "https://h.example", "secrets": [], "retries": 3}],
        ),
        "streams": ("streams.0.password", [{"name": "a", "url": "rtsp://c/l", "password": "x"}]),
        "limits.max_streams": ("limits.max_streams", 10**9),
        "server.port": ("server.port", -1),
    }
    refused = 0
    for key, (named, value) in overrides.items():
        with pytest.raises(ConfigError) as caught:
            load_config(environ={}, overrides={key: value})
        assert named in str(caught.value), (key, str(caught.value))
        refused += 1
    with pytest.raises(ConfigError, match=r"analysis\.colour"):
        load_config(environ={"FAKEWATCH_ANALYSIS__COLOUR": "red"})
    refused += 1
    files = {
        "server:\n  prot: 80\n": "server.prot",
        "stream:\n  - {name: a, url: 'rtsp://c/l'}\n": "stream",
        "!!python/object/apply:os.system ['echo pwned']\n": "not valid YAML",
        "analysis: [1, 2]\n": "analysis",
        "- just\n- a list\n": "must hold a mapping",
        "server: {host: 0.0.0.0}\n": "server.token",
        "analysis: {fps: .nan}\n": "analysis.fps",
        "{": "not valid YAML",
    }
    for index, (text, named) in enumerate(files.items()):
        path = tmp_path / f"c{index}.yaml"
        path.write_text(text)
        with restored_logging():
            status = main(["serve", "--config", str(path), "--port", "0", "--duration", "1"])
        err = capsys.readouterr().err
        assert status == 2 and err.startswith("fakewatch: error: ") and named in err, (text, err)
        refused += 1
    with capsys.disabled():
        print(f"\nhostile config: {refused} bad configurations refused with the key named")
