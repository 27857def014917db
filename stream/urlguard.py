"""Where a webhook may be sent: http(s) URLs whose host is a public address.

A webhook URL comes from configuration, but the service sends data to it by itself,
so a typo or a hostile name must not turn it into a probe of the service's own
network (server-side request forgery). :func:`check_webhook_url` checks the URL's
form and an address written in it; :func:`resolve_checked` resolves a host name and
refuses loopback, private, link-local, multicast, unspecified and reserved addresses.
Both give way to ``allow_private`` (a receiver on the same host or network, on purpose).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

WEBHOOK_SCHEMES = ("http", "https")


class RefusedAddressError(OSError):
    """A webhook host that is, or resolves only to, addresses that are not allowed."""


def address_refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not receive webhooks (``"loopback"``, ...), ``None`` when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return address_refusal(embedded)
        if address.teredo is not None:
            return address_refusal(address.teredo[1])
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    )
    for reason, refused in checks:
        if refused:
            return reason
    if not address.is_global:  # shared (CGNAT), documentation and other special ranges
        return "not globally routable"
    return None


def check_webhook_url(url: str, allow_private: bool = False) -> None:
    """Refuse (:class:`ValueError`) a URL that is not http(s) with a host, or whose host
    is an address that may not receive webhooks. Host names are checked when resolved."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as error:
        raise ValueError(f"not a valid URL ({error})") from None
    if parts.scheme.lower() not in WEBHOOK_SCHEMES:
        raise ValueError(f"scheme {parts.scheme or '(none)'!r} is not allowed; use http or https")
    host = parts.hostname
    if not host:
        raise ValueError("the URL has no host")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    reason = address_refusal(address)
    if reason and not allow_private:
        raise ValueError(
            f"{host} is a {reason} address; set allow_private: true to send webhooks there"
        )


def refused_addresses(addresses: list[str]) -> tuple[list[str], list[str]]:
    """``addresses`` split into the allowed ones and the refused ones (each with why)."""
    allowed, refused = [], []
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone
        reason = address_refusal(address)
        if reason is None:
            allowed.append(text)
        else:
            refused.append(f"{text} ({reason})")
    return allowed, refused


async def resolve_checked(host: str, port: int, allow_private: bool = False) -> list[str]:
    """The addresses of ``host`` that may receive webhooks. :class:`RefusedAddressError`
    when there are none; :class:`socket.gaierror` when the name does not resolve."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if allow_private:
        return addresses
    allowed, refused = refused_addresses(addresses)
    if not allowed:
        raise RefusedAddressError(
            f"{host} resolves only to refused addresses: {', '.join(refused)}; "
            "set allow_private: true to send webhooks there"
        )
    return allowed
