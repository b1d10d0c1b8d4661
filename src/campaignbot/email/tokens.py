"""Signed link tokens: unsubscribe, preferences, calendar and confirm links.

A token names a subscriber (or, for confirm links, a pending sign-up) by id *and* by
the row's current link nonce, a random string that the store replaces when the
subscriber unsubscribes or re-subscribes; a deleted row's id is never reused. So a
link from an old email stops working once its owner's state changed, and can never
reach somebody else. Tokens made before nonces existed carry the id alone; they
match only rows whose nonce is still '' (rows from before migration 0004).

Lifetimes (MAX_AGE_S): a confirm link works 7 days (and once); a preferences link
90 days; the RFC 8058 one-click unsubscribe link in an email has no end date, as the
header in an old email must keep working, and is bound by the nonce instead.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes

from campaignbot.errors import TokenError, TokenReason
from campaignbot.settings import Settings, secret_key, secret_key_fallbacks

#: purpose -> route under the public URL
ROUTES = {
    "unsubscribe": "/unsubscribe",
    "preferences": "/preferences",
    "calendar": "/events.ics",
    "confirm": "/confirm",
}

#: purpose -> default maximum age in seconds; None never expires. Calendar tokens are
#: no longer put into emails (the feed is public); old ones are simply ignored.
MAX_AGE_S: dict[str, float | None] = {
    "unsubscribe": None,
    "preferences": 90 * 24 * 3600,
    "calendar": None,
    "confirm": 7 * 24 * 3600,
}


class LinkToken(NamedTuple):
    """What a verified token names: a row id and the link nonce it was made for."""

    id: int
    nonce: str


def _check_purpose(purpose: str) -> None:
    if purpose not in ROUTES:
        raise ValueError(f"unknown token purpose {purpose!r} (known: {', '.join(ROUTES)})")


class _ClockedSigner(TimestampSigner):
    """itsdangerous' timestamp signer with an injectable clock (for tests)."""

    def __init__(self, *args: Any, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


def _payload(subscriber_id: int, nonce: str = "") -> bytes:
    """What a token carries, as JSON in base64 as itsdangerous' serializer has it:
    `[id, "nonce"]`, or the bare id for a row without a nonce (tokens as before)."""
    if isinstance(subscriber_id, bool) or not isinstance(subscriber_id, int):
        raise TypeError(f"subscriber id must be an int, got {subscriber_id!r}")
    if not nonce:
        return base64_encode(str(subscriber_id).encode("ascii"))
    if not (nonce.isascii() and nonce.replace("-", "").replace("_", "").isalnum()):
        raise ValueError(f"link nonce must be URL-safe ASCII, got {nonce!r}")
    return base64_encode(json.dumps([subscriber_id, nonce], separators=(",", ":")).encode())


def _link_token(value: Any, purpose: str) -> LinkToken:
    if isinstance(value, int) and not isinstance(value, bool):
        return LinkToken(value, "")
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], str)
        and value[1]
    ):
        return LinkToken(value[0], value[1])
    raise TokenError(f"invalid {purpose} link: bad payload")


def build_link(public_url: str, purpose: str, token: str) -> str:
    """`https://site/unsubscribe?t=TOKEN` (tokens are URL-safe base64 and dots)."""
    _check_purpose(purpose)
    return f"{public_url.rstrip('/')}{ROUTES[purpose]}?t={token}"


class LinkSigner:
    """Signs a subscriber id for one purpose; the salt is the purpose, so a token
    made for one link (unsubscribe) is worthless for another (confirm)."""

    def __init__(
        self,
        secret_key: str,
        *,
        public_url: str = "",
        clock: Callable[[], float] = time.time,
        fallbacks: Sequence[str] = (),
    ) -> None:
        if not secret_key:
            raise ValueError("secret key must not be empty")
        self.public_url = public_url
        # itsdangerous signs with the last key and verifies with any of them: links
        # signed with a fallback (an older key) keep working during a rotation
        keys: Any = [*fallbacks, secret_key] if fallbacks else secret_key
        # signing reuses one signer per purpose (itsdangerous derives a new one per
        # call); the tokens are exactly what the serializer makes and reads
        self._signers = {
            purpose: _ClockedSigner(keys, salt=purpose, clock=clock) for purpose in ROUTES
        }
        self._clock = clock
        # for sign_many: itsdangerous' key derivation, done once
        self._keys = {purpose: signer.derive_key() for purpose, signer in self._signers.items()}
        self._serializers = {
            purpose: URLSafeTimedSerializer(
                keys,
                salt=purpose,
                signer=_ClockedSigner,
                signer_kwargs={"clock": clock},
            )
            for purpose in ROUTES
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSigner:
        """The signer for this deployment: its secret key and public URL."""
        return cls(
            secret_key(settings),
            public_url=settings.public_url,
            fallbacks=secret_key_fallbacks(settings),
        )

    def sign(self, purpose: str, subscriber_id: int, nonce: str = "") -> str:
        """A URL-safe token naming `subscriber_id` (with its link `nonce`) for `purpose`."""
        _check_purpose(purpose)
        return self._signers[purpose].sign(_payload(subscriber_id, nonce)).decode("ascii")

    def sign_many(
        self, purposes: tuple[str, ...], subscriber_id: int, nonce: str = ""
    ) -> dict[str, str]:
        """`sign` for several purposes at once, as the sender needs three links per
        message: the same tokens, with the payload and timestamp encoded once and
        itsdangerous' HMAC-SHA1 computed in one C call each."""
        for purpose in purposes:
            _check_purpose(purpose)
        stamp = base64_encode(int_to_bytes(int(self._clock())))
        value = _payload(subscriber_id, nonce) + b"." + stamp
        return {
            purpose: (
                value + b"." + base64_encode(hmac.digest(self._keys[purpose], value, "sha1"))
            ).decode("ascii")
            for purpose in purposes
        }

    def verify(self, token: str, purpose: str, *, max_age_s: float | None = None) -> int:
        """The subscriber id in `token` (see `open` for the id and its nonce)."""
        return self.open(token, purpose, max_age_s=max_age_s).id

    def open(self, token: str, purpose: str, *, max_age_s: float | None = None) -> LinkToken:
        """The id and nonce in `token`; TokenError if forged, tampered, expired or
        made for another purpose. Without `max_age_s` the purpose's default applies
        (MAX_AGE_S). The caller compares the nonce with the row's."""
        _check_purpose(purpose)
        max_age = max_age_s if max_age_s is not None else MAX_AGE_S[purpose]
        try:
            value = self._serializers[purpose].loads(
                token, max_age=None if max_age is None else int(max_age)
            )
        except SignatureExpired as err:
            raise TokenError(f"{purpose} link has expired", reason=TokenReason.EXPIRED) from err
        except BadData as err:
            raise TokenError(f"invalid {purpose} link") from err
        return _link_token(value, purpose)

    def link(self, purpose: str, subscriber_id: int, nonce: str = "") -> str:
        """The public link for `purpose`, e.g. `{public_url}/unsubscribe?t=TOKEN`."""
        return build_link(self.public_url, purpose, self.sign(purpose, subscriber_id, nonce))


def calendar_feed_url(public_url: str) -> str:
    """The public calendar subscription: `webcal://site/events.ics` (no token: the
    feed is the campaign's public dates, the same for everyone)."""
    base = public_url.rstrip("/")
    for scheme in ("https://", "http://"):
        base = base.removeprefix(scheme)
    return f"webcal://{base}/events.ics"
