"""Pure ASGI middleware and helpers of the public app: security headers (HSTS when the
public URL is https), the Host check, and who the client is behind trusted proxies.

uvicorn runs with `proxy_headers=False`: X-Forwarded-For is read here, and only from
the proxies listed in CAMPAIGNBOT_HTTP__TRUSTED_PROXIES (none by default).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: no inline script or style anywhere; forms post only here; never framed
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # links carry tokens: never leak them onwards
    "x-frame-options": "DENY",
}
HSTS = "max-age=31536000"
#: answered whatever the Host header says: load balancers and the relay's webhooks
#: reach the app by address, not by the public name
_ANY_HOST_PATHS = ("/healthz",)
_ANY_HOST_PREFIXES = ("/hooks/",)


class BodyLimit:
    """Starlette's request body limit on every path but the relays' webhooks, which
    bound their own bodies (a relay's event batch is larger than any form)."""

    def __init__(self, app: ASGIApp, *, max_body_size: int) -> None:
        self.app = app
        self.limited = RequestBodyLimitMiddleware(app, max_body_size=max_body_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith(_ANY_HOST_PREFIXES):
            await self.app(scope, receive, send)
        else:
            await self.limited(scope, receive, send)


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """`10.0.0.1`, `10.0.0.0/8`, `::1` as networks; ValueError names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as err:
            raise ValueError(f"CAMPAIGNBOT_HTTP__TRUSTED_PROXIES: {value!r}: {err}") from None
    return networks


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(peer: str, forwarded_for: list[str], trusted: list[IPNetwork]) -> str:
    """The client's address: the TCP peer, or, when the peer is a trusted proxy, the
    right-most X-Forwarded-For hop that is not a trusted proxy (the hops to its left
    are whatever the client claimed). "unknown" for a hop that is not an address."""

    def is_trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in trusted)

    peer_address = _address(peer)
    if not trusted or not is_trusted(peer_address):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if not is_trusted(address):
            return str(address) if address is not None else "unknown"
    return str(_address(hops[0])) if hops else peer


def rate_key(client: str) -> str:
    """The rate-limit bucket of a client: its IPv4 address, or its IPv6 /64 (one
    household or server gets a whole /64 and may use any address in it)."""
    address = _address(client)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return client


class SecurityHeaders:
    """Adds SECURITY_HEADERS (and HSTS for an https public URL) to every response,
    413s from the body limit included."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.headers = {**SECURITY_HEADERS, **({"strict-transport-security": HSTS} if hsts else {})}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [
                    (k.encode(), v.encode())
                    for k, v in self.headers.items()
                    if k.encode() not in present
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def public_host(public_url: str) -> str:
    """The `host[:port]` of the public URL as a Host header carries it (lowercase)."""
    parts = urlsplit(public_url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def is_loopback_url(public_url: str) -> bool:
    """Whether the public URL names this machine (localhost, 127.0.0.0/8, ::1)."""
    host = (urlsplit(public_url).hostname or "").lower()
    if host == "localhost":
        return True
    address = _address(host)
    return address is not None and address.is_loopback


class HostCheck:
    """400 for a request whose Host is not the public URL's (cache poisoning, links
    built from a forged Host), except the public /healthz and /hooks/..."""

    def __init__(self, app: ASGIApp, *, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._exempt(scope["path"]):
            headers: Mapping[bytes, bytes] = dict(scope.get("headers", []))
            host = headers.get(b"host", b"").decode("latin-1").lower().rstrip(".")
            if host.endswith((":80", ":443")):
                host = host.rsplit(":", 1)[0]
            if host not in self.allowed:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send({"type": "http.response.body", "body": b"unknown host\n"})
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _exempt(path: str) -> bool:
        return path in _ANY_HOST_PATHS or path.startswith(_ANY_HOST_PREFIXES)
