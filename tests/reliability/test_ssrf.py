"""SSRF and URL safety: refused webhook and stream URLs never open a connection.

A real TCP listener runs on one port of 127.0.0.1, ::1 and every other local address
that is not public; every refused URL names that port. After all the attempts (config
load, the service's start, the API, the CLI, and a delivery whose name re-resolved to
loopback) the listener must have seen zero connections. A positive control at the end
of each test proves the listener does count a connection when one is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import av
import numpy as np
import pytest
from aiohttp import web

from fakewatch.cli.main import main
from fakewatch.stream.config import ConfigError, SourceConfig
from fakewatch.stream.sinks.outbox import Status
from fakewatch.stream.sources.ffmpeg import FFmpegSource, SourceURLError
from fakewatch.stream.sources.source import SourceStatus
from fakewatch.stream.urlguard import address_refusal
from tests.reliability.test_secrets import restored_logging
from tests.stream.test_ffmpeg_source import Recorder
from tests.support.service import serving
from tests.support.webhooks import emit, health, new_secret, wait_rows

REASONS = (
    "loopback",
    "private",
    "link-local",
    "unspecified",
    "reserved",
    "multicast",
    "not globally routable",
    "is not allowed",
)

STREAM_REASONS = ("is not allowed", "local files are off", "no host", "control characters")


def local_addresses() -> list[str]:
    """127.0.0.1, ::1 and the addresses this host would send from (never public ones)."""
    found = ["127.0.0.1", "::1"]
    for family, probe in ((socket.AF_INET, "203.0.113.1"), (socket.AF_INET6, "2001:db8::1")):
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect((probe, 9))  # UDP: picks a route, sends nothing
            except OSError:
                continue
            address = str(sock.getsockname()[0])
        if address_refusal(ipaddress.ip_address(address)) is not None:
            found.append(address)
    return list(dict.fromkeys(found))


class Listener:
    """TCP listeners on one port of several local addresses; counts every connection."""

    def __init__(self) -> None:
        self.port = 0
        self.addresses: list[str] = []
        self.connections: list[tuple[str, float]] = []
        self._servers: list[asyncio.Server] = []

    async def start(self) -> None:
        for host in local_addresses():
            try:
                server = await asyncio.start_server(self._accept, host, self.port)
            except OSError:
                continue
            self.port = int(server.sockets[0].getsockname()[1])
            self._servers.append(server)
            self.addresses.append(host)
        assert "127.0.0.1" in self.addresses

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append((str(writer.get_extra_info("sockname")[0]), time.time()))
        writer.close()

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()

    def url_host(self, address: str) -> str:
        return f"[{address}]" if ":" in address else address


@contextlib.asynccontextmanager
async def listening() -> AsyncIterator[Listener]:
    listener = Listener()
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()


async def prove_it_counts(listener: Listener) -> None:
    """A positive control: a real connection to the listener is counted."""
    before = len(listener.connections)
    _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.close()
    for _ in range(50):
        if len(listener.connections) > before:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the listener did not count a real connection")


def webhook_urls(listener: Listener) -> list[str]:
    """Webhook URLs that must be refused, every one aimed at the listener's port."""
    port = listener.port
    literal = [
        f"http://127.0.0.1:{port}/hook",
        f"https://127.0.0.1:{port}/hook",
        f"HTTP://127.0.0.1:{port}/hook",
        f"http://127.8.9.10:{port}/hook",
        f"http://[::1]:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook",
        f"http://[::ffff:7f00:1]:{port}/hook",
        f"http://[2002:7f00:1::]:{port}/hook",  # 6to4 around 127.0.0.1
        f"http://169.254.169.254:{port}/latest/meta-data/",
        f"http://[fe80::1]:{port}/hook",
        f"http://10.0.0.1:{port}/hook",
        f"http://10.255.255.254:{port}/hook",
        f"http://172.16.0.1:{port}/hook",
        f"http://172.31.255.254:{port}/hook",
        f"http://192.168.0.1:{port}/hook",
        f"http://192.168.255.254:{port}/hook",
        f"http://0.0.0.0:{port}/hook",
        f"http://[::]:{port}/hook",
        f"http://user:pw@127.0.0.1:{port}/hook",
        f"http://hooks.example.com@127.0.0.1:{port}/hook",  # the host is 127.0.0.1
        *(f"http://{listener.url_host(a)}:{port}/hook" for a in listener.addresses),
    ]
    names = [  # resolve (through the system resolver, no DNS) to 127.0.0.1
        f"http://localhost:{port}/hook",
        f"http://LocalHost:{port}/hook",
        f"http://127.1:{port}/hook",
        f"http://2130706433:{port}/hook",
        f"http://0x7f000001:{port}/hook",
        f"http://0177.0.0.1:{port}/hook",
    ]
    schemes = [
        f"ftp://127.0.0.1:{port}/hook",
        f"gopher://127.0.0.1:{port}/_POST",
        f"dict://127.0.0.1:{port}/info",
        f"ws://127.0.0.1:{port}/hook",
        "file:///etc/passwd",
        f"http+unix://%2Ftmp%2Fsock:{port}/hook",
        f"//127.0.0.1:{port}/hook",
        f"127.0.0.1:{port}/hook",
    ]
    return [*literal, *names, *schemes]


def stream_urls(listener: Listener) -> list[str]:
    """Stream URLs that must be refused while local files are off."""
    port, here = listener.port, f"127.0.0.1:{listener.port}"
    return [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "file:/etc/passwd",
        "/etc/passwd",
        "./clip.mp4",
        f"concat:http://{here}/a.ts|http://{here}/b.ts",
        f"concatf:http://{here}/list.txt",
        f"subfile,,start,0,end,100,,:http://{here}/a.ts",
        f"subfile:http://{here}/a.ts",
        f"tcp://{here}",
        f"tls://{here}",
        f"unix:/tmp/fakewatch-{port}.sock",
        f"async:tcp://{here}",
        f"cache:http://{here}/a.ts",
        f"crypto:http://{here}/a.ts",
        f"hls+http://{here}/live.m3u8",
        f"gopher://{here}/x",
        f"ftp://{here}/x.ts",
        f"rtmpt://{here}/live",
        f"tee:http://{here}/a",
        "pipe:0",
        "fd:3",
        "data:video/mp2t;base64,R0dHRw==",
        f"http:{here}/x.m3u8",
        "rtsp:///live",
        f"rtsp://{here}/live\r\nCSeq: 9",
    ]


def _reason_given(message: str) -> bool:
    return any(reason in message for reason in REASONS) or "no host" in message


@pytest.mark.reliability
def test_webhook_urls_to_local_or_private_addresses_are_refused_without_connecting(
    tmp_path: Path,
) -> None:
    async def check() -> None:
        async with listening() as listener:
            refused: dict[str, str] = {}
            for index, url in enumerate(webhook_urls(listener)):
                entry = {"name": "ops", "url": url, "secrets": [new_secret()]}
                with pytest.raises(ConfigError) as caught:
                    # an address in the URL is refused at load, a name when the service
                    # starts (before anything is sent)
                    async with serving(tmp_path / str(index), **{"webhooks.endpoints": [entry]}):
                        pass
                message = str(caught.value)
                assert "webhooks.endpoints.0" in message or "webhook endpoint 'ops'" in message
                assert _reason_given(message), (url, message)
                refused[url] = message.splitlines()[-1].strip()
            await asyncio.sleep(0.3)  # anything in flight would have arrived
            seen = len(listener.connections)
            await prove_it_counts(listener)
        assert seen == 0, listener.connections
        print(
            f"\nssrf webhooks: {len(refused)} URLs refused, {seen} connections seen by the "
            f"listener on port {listener.port} of {', '.join(listener.addresses)}"
        )
        for marker in ("169.254", "localhost", "0x7f", "ftp:"):
            url = next(u for u in refused if marker in u)
            print(f"  {url!r}: {refused[url]}")

    asyncio.run(check())


@pytest.mark.reliability
def test_a_name_that_re_resolves_to_loopback_is_refused_at_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name passed the check at start (simulated: the start check is
    told the name is public), and at delivery the real resolver says 127.0.0.1."""

    async def public(host: str, port: int, allow_private: bool = False) -> list[str]:
        return ["93.184.216.34"]

    monkeypatch.setattr("fakewatch.stream.sinks.delivery.resolve_checked", public)

    async def check() -> None:
        async with listening() as listener:
            url = f"http://localhost:{listener.port}/hook"
            entry = {"name": "ops", "url": url, "secrets": [new_secret()]}
            settings = {
                "webhooks.endpoints": [entry],
                "webhooks.initial_backoff_s": 0.05,
                "webhooks.max_backoff_s": 0.2,
            }
            async with serving(tmp_path, **settings) as service:
                await emit(service, health())
                rows = await wait_rows(service, lambda rows: rows[0].attempts >= 3)
            assert rows[0].status is Status.PENDING
            assert "refused: localhost resolves only to refused" in (rows[0].last_error or "")
            await asyncio.sleep(0.2)
            seen = len(listener.connections)
            await prove_it_counts(listener)
        assert seen == 0, listener.connections
        print(
            f"\nssrf rebinding: {rows[0].attempts} delivery attempts refused at connect "
            f"({rows[0].last_error}), {seen} connections seen"
        )

    asyncio.run(check())


@pytest.mark.reliability
def test_stream_urls_outside_the_allowlist_are_refused_by_the_api_config_and_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def check() -> tuple[Listener, int, int]:
        async with listening() as listener:
            urls = stream_urls(listener)
            api = 0
            async with serving(tmp_path, **{"sources.allow_local_files": False}) as service:
                for url in urls:
                    payload = {"url": url, "name": "probe"}
                    async with service.http.post("/api/streams", json=payload) as response:
                        body = await response.json()
                        assert response.status == 400, (url, body)
                        message = body["error"]
                    assert any(words in message for words in STREAM_REASONS), (url, message)
                    api += 1
                assert service.pipeline.streams == {}
            config = 0
            for index, url in enumerate(urls[:6]):
                with pytest.raises(SourceURLError):
                    streams = [{"name": "probe", "url": url}]
                    async with serving(
                        tmp_path / f"c{index}",
                        **{"sources.allow_local_files": False, "streams": streams},
                    ):
                        pass
                config += 1
            await asyncio.sleep(0.3)
            seen = len(listener.connections)
            await prove_it_counts(listener)
        assert seen == 0, listener.connections
        return listener, api, config

    listener, api, config = asyncio.run(check())
    bad = f"concat:http://127.0.0.1:{listener.port}/a.ts|http://127.0.0.1:{listener.port}/b.ts"
    with restored_logging():
        status = main(["serve", "--port", "0", "--duration", "5", "--stream", f"probe={bad}"])
    err = capsys.readouterr().err
    assert status == 2 and "fakewatch: error: the URL scheme 'concat' is not allowed" in err
    with capsys.disabled():
        print(
            f"\nssrf streams: {api} URLs refused by POST /api/streams (400), {config} by the "
            f"service's start from config, 1 by `fakewatch serve --stream` (exit 2); "
            f"0 connections seen on port {listener.port}"
        )


@pytest.fixture(scope="module")
def segment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MPEG-TS segment of 20 frames."""
    path = tmp_path_factory.mktemp("hls") / "seg.ts"
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            image = np.full((48, 64, 3), i * 10, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def playlist(uri: str) -> str:
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:2.0,\n{uri}\n#EXT-X-ENDLIST\n"
    )


@pytest.mark.reliability
def test_an_allowed_playlist_cannot_reach_local_files_behind_it(segment: Path) -> None:
    """An http(s) HLS playlist is allowed; segments it names through file:, concat: or
    subfile: are not (FFmpeg's protocol_whitelist), while http segments play."""

    async def check() -> dict[str, tuple[int, str | None]]:
        served: dict[str, str] = {}
        app = web.Application()

        async def handle(request: web.Request) -> web.StreamResponse:
            name = request.match_info["name"]
            if name == "seg.ts":
                return web.FileResponse(segment)
            return web.Response(text=served[name], content_type="application/vnd.apple.mpegurl")

        app.router.add_get("/{name}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        local = str(segment)
        served.update(
            {
                "http.m3u8": playlist(f"{base}/seg.ts"),
                "file.m3u8": playlist(f"file://{local}"),
                "path.m3u8": playlist(local),
                "concat.m3u8": playlist(f"concat:{local}|{local}"),
                "subfile.m3u8": playlist(f"subfile,,start,0,end,1000000,,:{local}"),
            }
        )
        results: dict[str, tuple[int, str | None]] = {}
        try:
            for name in served:
                recorder = Recorder()
                config = SourceConfig(loop_files=False, reconnect_initial_s=5.0)
                source = FFmpegSource(f"{base}/{name}", config, recorder.frames, recorder.on_status)
                await source.start()
                await recorder.wait(SourceStatus.DOWN, timeout=15)
                await source.stop()
                results[name] = (recorder.frames.received, source.last_error)
        finally:
            await runner.cleanup()
        return results

    results = asyncio.run(check())
    assert results["http.m3u8"][0] > 0, results  # the control: an http segment plays
    for name, (frames, error) in results.items():
        if name != "http.m3u8":
            assert frames == 0 and error, (name, frames, error)
    print(
        "\nssrf playlists: "
        + ", ".join(f"{name}: {frames} frames" for name, (frames, _) in results.items())
    )
