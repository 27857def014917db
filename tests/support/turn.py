"""A real STUN and TURN server for the WebRTC tests: Debian's coturn (``turnserver``) on
loopback, with long-term credentials, relaying on loopback ports.

:func:`turn_server` starts one and yields its address and credentials; the service's
answer then carries a relayed candidate only if it authenticated with them.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aioice import stun

from tests.support.peers import missing

DEBIAN_PACKAGE = "coturn"
REALM = "fakewatch.test"


@dataclass(frozen=True)
class TurnServer:
    port: int
    username: str
    password: str
    log: Path

    @property
    def stun_url(self) -> str:
        return f"stun:127.0.0.1:{self.port}"

    @property
    def turn_url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"


def require_turnserver() -> str:
    """The path of coturn's ``turnserver``; skip (fail under CI) without it."""
    path = shutil.which("turnserver")
    if path is None:
        missing("the STUN/TURN tests", f"turnserver is missing; apt-get install {DEBIAN_PACKAGE}")
    return path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers_stun(port: int) -> bool:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        probe.sendto(bytes(request), ("127.0.0.1", port))
        try:
            data, _ = probe.recvfrom(2048)
        except OSError:
            return False
    return stun.parse_message(data).transaction_id == request.transaction_id


@contextlib.contextmanager
def turn_server(folder: Path, username: str, password: str) -> Iterator[TurnServer]:
    """coturn on 127.0.0.1 (STUN and TURN over UDP and TCP on one port), state in ``folder``."""
    binary = require_turnserver()
    port = _free_udp_port()
    log = folder / "turnserver.log"
    command = [
        binary,
        "--no-cli", "--no-tls", "--no-dtls", "--fingerprint",
        "--listening-ip=127.0.0.1", f"--listening-port={port}",
        "--relay-ip=127.0.0.1", "--min-port=49152", "--max-port=65535",
        "--lt-cred-mech", f"--user={username}:{password}", f"--realm={REALM}",
        "--allow-loopback-peers",  # the service and the publisher are both on loopback
        f"--userdb={folder / 'turndb'}", f"--pidfile={folder / 'turnserver.pid'}",
        "--log-file=stdout",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if process.poll() is not None or _answers_stun(port):
                break
            time.sleep(0.1)
        if process.poll() is not None or not _answers_stun(port):
            text = log.read_text() if log.exists() else "(no log)"
            raise RuntimeError(f"turnserver did not answer STUN on port {port}:\n{text[-2000:]}")
        yield TurnServer(port, username, password, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
