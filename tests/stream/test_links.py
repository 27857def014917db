"""Signed evidence links: bound to their path and expiry, under a key that outlives a
restart."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from fakewatch.stream.sinks.links import LinkSigner, load_link_key

PATH = "/api/evidence/0123456789abcdef0123456789abcdef/frame.jpg"


def parts(link: str) -> tuple[str, str, str]:
    split = urlsplit(link)
    query = dict(parse_qsl(split.query))
    return split.path, query["expires"], query["sig"]


def test_a_link_opens_its_path_until_it_expires(tmp_path: Path) -> None:
    signer = LinkSigner(load_link_key(tmp_path), ttl_s=60)
    path, expires, sig = parts(signer.sign(PATH, now=1000))
    assert path == PATH and expires == "1060"
    assert signer.refusal(PATH, expires, sig, now=1059) is None
    assert "expired" in str(signer.refusal(PATH, expires, sig, now=1061))
    assert "signature" in str(signer.refusal(PATH.replace("frame", "crop"), expires, sig, 1000))
    assert "signature" in str(signer.refusal(PATH, "1061", sig, now=1000))
    changed = sig[:-1] + ("B" if sig.endswith("A") else "A")
    assert "signature" in str(signer.refusal(PATH, expires, changed, now=1000))
    assert "expires" in str(signer.refusal(PATH, "-1", sig, now=1000))
    # the key stays in the folder, 0600: a restart verifies the links given before
    again = LinkSigner(load_link_key(tmp_path), ttl_s=60)
    assert again.refusal(PATH, expires, sig, now=1000) is None
    assert (tmp_path / ".link-key").stat().st_mode & 0o777 == 0o600
    other = LinkSigner(b"another key of 32 bytes, exactly", ttl_s=60)
    assert other.refusal(PATH, expires, sig, now=1000) is not None
    assert "key" not in repr(signer).replace("LinkSigner", "")


def test_a_damaged_key_file_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / ".link-key").write_text("not hex\n")
    with pytest.raises(ValueError, match=r"\.link-key holds no link key"):
        load_link_key(tmp_path)
