"""Dashboard users and API tokens, kept in one TOML file (`CAMPAIGNBOT_ADMIN__USERS_FILE`).

Passwords are stored as argon2id hashes (argon2-cffi). API tokens are 256-bit random
secrets, so a SHA-256 digest is enough to store them: nobody can guess a preimage, and
a fast digest lets every API request be checked without argon2's deliberate cost.

    [users."alice"]
    password = "$argon2id$v=19$..."

    [tokens."3f9a1c2e"]
    name = "website"
    hash = "<sha256 hex of the secret>"
    scopes = ["subscribers:write"]
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from campaignbot.errors import ConfigError, InvalidInputError

#: what a token may do; a scope includes the ones listed after it
SCOPES: dict[str, tuple[str, ...]] = {
    "alerts:read": (),
    "subscribers:read": (),
    "subscribers:write": ("subscribers:read",),
    # the caller already holds the person's consent: may add them as confirmed
    "subscribers:consent": ("subscribers:write", "subscribers:read"),
}
TOKEN_PREFIX = "cbt"
_NAME_RE = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
_hasher = PasswordHasher()
# verified against when the user is unknown, so a wrong name costs as long as a wrong password
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class ApiToken:
    """One stored token: its public id, a label, its scopes and the secret's digest."""

    id: str
    name: str
    digest: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Whether this token grants `scope` (directly or through a wider scope)."""
        return any(scope == s or scope in SCOPES.get(s, ()) for s in self.scopes)


@dataclass
class Accounts:
    """The parsed users file."""

    users: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, ApiToken] = field(default_factory=dict)

    def verify_password(self, user: str, password: str) -> bool:
        """True when `user` exists and `password` matches; same cost either way."""
        stored = self.users.get(user)
        try:
            _hasher.verify(stored or _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None

    def session_stamp(self, user: str) -> str | None:
        """Changes when the user's password changes or the user is removed: binds sessions."""
        stored = self.users.get(user)
        return None if stored is None else hashlib.sha256(stored.encode()).hexdigest()[:16]

    def token_for(self, bearer: str) -> ApiToken | None:
        """The stored token a presented `cbt_<id>_<secret>` string matches, else None."""
        parts = bearer.split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            return None
        token = self.tokens.get(parts[1])
        if token is None:
            return None
        digest = hashlib.sha256(parts[2].encode()).hexdigest()
        return token if hmac.compare_digest(digest, token.digest) else None


def load_accounts(path: Path) -> Accounts:
    """Read the users file; a missing file means no users and no tokens."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return Accounts()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: {err}") from err
    try:
        users = {str(name): str(entry["password"]) for name, entry in data.get("users", {}).items()}
        tokens = {
            str(tid): ApiToken(
                str(tid), str(entry.get("name", "")), str(entry["hash"]), frozenset(entry["scopes"])
            )
            for tid, entry in data.get("tokens", {}).items()
        }
    except (KeyError, TypeError, AttributeError) as err:
        raise ConfigError(f"{path}: malformed users file ({err})") from err
    return Accounts(users, tokens)


def _dump(accounts: Accounts, *, now: datetime) -> str:
    # JSON strings are valid TOML basic strings (non-ASCII is escaped as \uXXXX)
    lines = [
        "# campaignbot dashboard users and API tokens; written by `campaignbot admin`",
        f"# last written {now.isoformat(timespec='seconds')}",
        "",
    ]
    for name, hashed in sorted(accounts.users.items()):
        lines += [f"[users.{json.dumps(name)}]", f"password = {json.dumps(hashed)}", ""]
    for tid, token in sorted(accounts.tokens.items()):
        lines += [
            f"[tokens.{json.dumps(tid)}]",
            f"name = {json.dumps(token.name)}",
            f"hash = {json.dumps(token.digest)}",
            f"scopes = {json.dumps(sorted(token.scopes))}",
            "",
        ]
    return "\n".join(lines)


def _save(path: Path, accounts: Accounts, *, now: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # 0600 from the start: the hashes are not secrets, but nobody else needs to read them
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(_dump(accounts, now=now))
    os.replace(tmp, path)


def check_name(name: str, what: str) -> str:
    """A user or token name: letters, digits and `_.@+-`, at most 64."""
    if not _NAME_RE.fullmatch(name):
        raise InvalidInputError(f"{what} {name!r}: use 1-64 letters, digits or _.@+-")
    return name


def add_user(path: Path, user: str, password: str, *, now: datetime) -> bool:
    """Add `user` or set their password; True when the user is new. Old sessions end."""
    check_name(user, "user")
    if len(password) < 12:
        raise InvalidInputError("password: use at least 12 characters")
    accounts = load_accounts(path)
    new = user not in accounts.users
    accounts.users[user] = _hasher.hash(password)
    _save(path, accounts, now=now)
    return new


def add_token(path: Path, name: str, scopes: list[str], *, now: datetime) -> str:
    """Create a token with `scopes`; returns the bearer string (shown once, stored hashed)."""
    check_name(name, "token")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise InvalidInputError(
            f"scope {', '.join(unknown) or '(none)'}: choose from {', '.join(SCOPES)}"
        )
    accounts = load_accounts(path)
    tid = secrets.token_hex(4)
    while tid in accounts.tokens:
        tid = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    digest = hashlib.sha256(secret.encode()).hexdigest()
    accounts.tokens[tid] = ApiToken(tid, name, digest, frozenset(scopes))
    _save(path, accounts, now=now)
    return f"{TOKEN_PREFIX}_{tid}_{secret}"


class AccountsFile:
    """The users file, parsed again only when it changed (every request asks it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cached: tuple[tuple[int, int, int], Accounts] | None = None

    def load(self) -> Accounts:
        """The parsed file (cached while it is unchanged)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return Accounts()
        # add_user/add_token replace the file (os.replace): a new inode on every write
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, load_accounts(self.path))
        return self._cached[1]
