"""VERP return paths: `bounces+<tag>@domain`, where the tag names a delivery and is signed.

The tag is `<delivery id in base 36>.<10 base-32 characters of HMAC-SHA256>`: short,
lowercase (some MTAs lowercase local parts), and nobody without the secret key can make
a bounce count against someone else's delivery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_TAG_RE = re.compile(r"([0-9a-z]{1,13})\.([a-z2-7]{10})")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if n == 0:
            return out


def _mac(key: bytes, delivery_id: int) -> str:
    digest = hmac.new(key, f"verp:{delivery_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:10]


def derive_key(secret_key: str) -> bytes:
    """A key for VERP tags only, derived from the link-signing secret."""
    return hmac.new(secret_key.encode(), b"campaignbot-verp-v1", hashlib.sha256).digest()


def make_tag(key: bytes, delivery_id: int) -> str:
    """The signed tag for one delivery."""
    return f"{_base36(delivery_id)}.{_mac(key, delivery_id)}"


def return_path(bounce_address: str, key: bytes, delivery_id: int) -> str:
    """`bounces@example.org` -> `bounces+<tag>@example.org` for this delivery."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{make_tag(key, delivery_id)}@{domain}"


def tag_of(address: str, bounce_address: str | None = None) -> str | None:
    """The tag in a `local+tag@domain` address (unverified); None when there is none.

    With `bounce_address`, only addresses with its local part and domain count.
    """
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if not at or "+" not in local:
        return None
    base, _, tag = local.partition("+")
    if bounce_address is not None:
        want_local, _, want_domain = bounce_address.rpartition("@")
        if base.lower() != want_local.lower() or domain.lower() != want_domain.lower():
            return None
    return tag.lower() if _TAG_RE.fullmatch(tag.lower()) else None


def verify_tag(key: bytes, tag: str) -> int | None:
    """The delivery id a genuine tag names; None for a forged or malformed one."""
    match = _TAG_RE.fullmatch(tag.lower())
    if match is None:
        return None
    delivery_id = int(match.group(1), 36)
    if not hmac.compare_digest(_mac(key, delivery_id), match.group(2)):
        return None
    return delivery_id
