"""Dashboard sessions (signed cookies), CSRF tokens and the failed-login limiter."""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "campaignbot_admin"
LOGIN_CSRF_COOKIE = "campaignbot_admin_login"
SESSION_MAX_AGE_S = 8 * 3600


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    #: the user's password stamp at login: a new password ends older sessions
    stamp: str


class Sessions:
    """Signs and reads the session cookie and the login form's CSRF cookie."""

    def __init__(self, secret: str) -> None:
        self._session = URLSafeTimedSerializer(secret, salt="campaignbot-admin-session")
        self._login = URLSafeTimedSerializer(secret, salt="campaignbot-admin-login-csrf")

    def issue(self, user: str, stamp: str) -> tuple[str, Session]:
        """A new session for `user`: (cookie value, session)."""
        session = Session(user, secrets.token_urlsafe(24), stamp)
        return self._session.dumps({"u": user, "c": session.csrf, "s": stamp}), session

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie carries, or None if absent, forged or expired."""
        if not cookie:
            return None
        try:
            data: Any = self._session.loads(cookie, max_age=SESSION_MAX_AGE_S)
            return Session(str(data["u"]), str(data["c"]), str(data["s"]))
        except (BadSignature, KeyError, TypeError):
            return None

    def login_token(self) -> tuple[str, str]:
        """(cookie, form value) for the login form: the cookie signs the value."""
        value = secrets.token_urlsafe(24)
        return self._login.dumps(value), value

    def login_token_ok(self, cookie: str | None, value: str) -> bool:
        """Whether the login form's CSRF value matches its signed cookie."""
        if not cookie or not value:
            return False
        try:
            expected = self._login.loads(cookie, max_age=3600)
        except BadSignature:
            return False
        return secrets.compare_digest(str(expected), value)


class LoginLimiter:
    """At most `attempts` failed logins per client address and per user name in `window`.

    In memory: a restart forgets, which is acceptable for a loopback admin listener;
    the argon2 cost already slows each guess.
    """

    def __init__(self, *, attempts: int = 5, window: timedelta = timedelta(minutes=15)) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[datetime]] = {}

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        return times

    def retry_after_s(self, keys: list[str], *, now: datetime) -> int:
        """Seconds until another attempt is allowed (0: allowed now)."""
        waits = [
            (times[0] + self.window - now).total_seconds()
            for key in keys
            if len(times := self._recent(key, now)) >= self.attempts
        ]
        return max(1, int(max(waits)) + 1) if waits else 0

    def failed(self, keys: list[str], *, now: datetime) -> None:
        """Count one failed login against each key."""
        for key in keys:
            self._recent(key, now).append(now)
        if len(self._failures) > 10_000:  # an address sweep must not grow memory for ever
            for key in [k for k, v in self._failures.items() if not v]:
                del self._failures[key]

    def succeeded(self, user_key: str) -> None:
        """Forget the user name's failures (the address keeps its own)."""
        self._failures.pop(user_key, None)
