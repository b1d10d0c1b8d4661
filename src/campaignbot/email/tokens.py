"""Signed link tokens: unsubscribe, preferences, calendar and confirm links."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes

from campaignbot.errors import TokenError
from campaignbot.settings import Settings, secret_key

#: purpose -> route under the public URL
ROUTES = {
    "unsubscribe": "/unsubscribe",
    "preferences": "/preferences",
    "calendar": "/events.ics",
    "confirm": "/confirm",
}

#: purpose -> default maximum age in seconds; None never expires
MAX_AGE_S: dict[str, float | None] = {
    "unsubscribe": None,
    "preferences": None,
    "calendar": None,
    "confirm": 7 * 24 * 3600,
}


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


def _payload(subscriber_id: int) -> bytes:
    """What a token carries: the id as JSON, base64 as itsdangerous' serializer has it."""
    if isinstance(subscriber_id, bool) or not isinstance(subscriber_id, int):
        raise TypeError(f"subscriber id must be an int, got {subscriber_id!r}")
    return base64_encode(str(subscriber_id).encode("ascii"))


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
    ) -> None:
        if not secret_key:
            raise ValueError("secret key must not be empty")
        self.public_url = public_url
        # signing reuses one signer per purpose (itsdangerous derives a new one per
        # call); the tokens are exactly what the serializer makes and reads
        self._signers = {
            purpose: _ClockedSigner(secret_key, salt=purpose, clock=clock) for purpose in ROUTES
        }
        self._clock = clock
        # for sign_many: itsdangerous' key derivation, done once
        self._keys = {purpose: signer.derive_key() for purpose, signer in self._signers.items()}
        self._serializers = {
            purpose: URLSafeTimedSerializer(
                secret_key,
                salt=purpose,
                signer=_ClockedSigner,
                signer_kwargs={"clock": clock},
            )
            for purpose in ROUTES
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSigner:
        """The signer for this deployment: its secret key and public URL."""
        return cls(secret_key(settings), public_url=settings.public_url)

    def sign(self, purpose: str, subscriber_id: int) -> str:
        """A URL-safe token naming `subscriber_id` for `purpose`."""
        _check_purpose(purpose)
        return self._signers[purpose].sign(_payload(subscriber_id)).decode("ascii")

    def sign_many(self, purposes: tuple[str, ...], subscriber_id: int) -> dict[str, str]:
        """`sign` for several purposes at once, as the sender needs three links per
        message: the same tokens, with the payload and timestamp encoded once and
        itsdangerous' HMAC-SHA1 computed in one C call each."""
        for purpose in purposes:
            _check_purpose(purpose)
        stamp = base64_encode(int_to_bytes(int(self._clock())))
        value = _payload(subscriber_id) + b"." + stamp
        return {
            purpose: (
                value + b"." + base64_encode(hmac.digest(self._keys[purpose], value, "sha1"))
            ).decode("ascii")
            for purpose in purposes
        }

    def verify(self, token: str, purpose: str, *, max_age_s: float | None = None) -> int:
        """The subscriber id in `token`; TokenError if forged, tampered, expired or
        made for another purpose. Without `max_age_s` the purpose's default applies
        (confirm links expire after 7 days, the others never)."""
        _check_purpose(purpose)
        max_age = max_age_s if max_age_s is not None else MAX_AGE_S[purpose]
        try:
            value = self._serializers[purpose].loads(
                token, max_age=None if max_age is None else int(max_age)
            )
        except SignatureExpired as err:
            raise TokenError(f"{purpose} link has expired") from err
        except BadData as err:
            raise TokenError(f"invalid {purpose} link") from err
        if not isinstance(value, int) or isinstance(value, bool):
            raise TokenError(f"invalid {purpose} link: bad payload")
        return value

    def link(self, purpose: str, subscriber_id: int) -> str:
        """The public link for `purpose`, e.g. `{public_url}/unsubscribe?t=TOKEN`."""
        return build_link(self.public_url, purpose, self.sign(purpose, subscriber_id))
