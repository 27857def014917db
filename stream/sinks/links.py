"""Signed, expiring links to alert evidence: what a webhook's receiver opens without the
API token.

A link is an evidence path with ``?expires=<unix seconds>&sig=<signature>``, the
signature being the URL-safe base64 (unpadded) HMAC-SHA256 of ``"<path>\\n<expires>"``
under the link key. The API lets a request through on such a link, without the bearer
token, when the signature matches its path and expiry and the expiry has not passed;
any other link is refused (403). The key is ``evidence.link_key``, or else a random
key kept in the evidence folder (``.link-key``, mode 0600), so that links outlive a
restart; deleting that file (or changing ``link_key``) revokes every link given out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode

KEY_FILE = ".link-key"
KEY_BYTES = 32
MAX_EXPIRES_DIGITS = 12


class LinkSigner:
    """Signs evidence paths for ``ttl_s`` seconds and checks signed requests."""

    def __init__(self, key: bytes, ttl_s: float) -> None:
        if len(key) < 16:
            raise ValueError("a link key needs at least 16 bytes")
        self._key = key
        self.ttl_s = ttl_s

    def __repr__(self) -> str:
        return f"LinkSigner(ttl_s={self.ttl_s})"

    def sign(self, path: str, now: float | None = None) -> str:
        """``path`` with its expiry and signature as the query."""
        expires = int((time.time() if now is None else now) + self.ttl_s)
        query = urlencode({"expires": expires, "sig": self._signature(path, str(expires))})
        return f"{path}?{query}"

    def refusal(self, path: str, expires: str, sig: str, now: float | None = None) -> str | None:
        """Why a request for ``path`` with these query values is refused; ``None`` when the
        link is valid."""
        if not (expires.isascii() and expires.isdigit()) or len(expires) > MAX_EXPIRES_DIGITS:
            return "the link's expires is not a time; ask for a new link"
        expected = self._signature(path, expires)
        if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
            return "the link's signature does not match; use the link as it was given"
        if int(expires) < (time.time() if now is None else now):
            return "the link has expired; ask for a new one (evidence.link_ttl_s)"
        return None

    def _signature(self, path: str, expires: str) -> str:
        digest = hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def load_link_key(folder: Path) -> bytes:
    """The key in ``folder``'s ``.link-key``, made (random, mode 0600) if there is none."""
    path = folder / KEY_FILE
    folder.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            key = bytes.fromhex(path.read_text().strip())
        except ValueError:
            key = b""
        if len(key) < 16:
            raise ValueError(f"{path} holds no link key; delete it to make a new one") from None
        return key
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(descriptor, "w") as file:
        file.write(key.hex() + "\n")
    return key
