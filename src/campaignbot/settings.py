"""Operator settings from the environment (`CAMPAIGNBOT_*`) and `.env`."""

from __future__ import annotations

import json
import os
import secrets
import stat
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from campaignbot.errors import ConfigError, Problem


class TLSMode(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class SMTPSettings(BaseModel):
    """SMTP relay; without `host` mail goes to the Maildir outbox."""

    host: str | None = None
    port: int = Field(587, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: TLSMode = TLSMode.STARTTLS
    max_connections: int = Field(8, ge=1, le=256)
    rate_limit: float = Field(0, ge=0, description="messages per second, 0 = unlimited")
    timeout_s: float = Field(30, gt=0)
    max_attempts: int = Field(6, ge=1, description="attempts before a delivery fails")
    retry_for_s: float = Field(
        24 * 3600, gt=0, description="give up retrying this long after the first attempt"
    )


def _list(value: Any) -> Any:
    """A list setting from the environment: JSON (`["a", "b"]`) or `a, b`."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


#: a list of strings that also reads `a,b` from the environment
StrList = Annotated[list[str], NoDecode, BeforeValidator(_list)]


class HTTPSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: proxies whose X-Forwarded-For / -Proto are believed (IPs or networks); empty:
    #: nobody's, the client is the TCP peer
    trusted_proxies: StrList = Field(
        default_factory=list,
        description="proxies (IPs or networks, comma-separated or JSON) whose "
        "X-Forwarded-For is believed; empty: nobody's",
    )


class BounceSettings(BaseModel):
    """The bounce mailbox, the soft-bounce rule and the relays' webhook secrets."""

    #: `imaps://user:password@host:993` (TLS; `imap://` only to loopback, for tests)
    imap_url: SecretStr | None = None
    imap_folder: str = "INBOX"
    #: read messages are moved here; empty: they stay and get a keyword flag instead
    processed_folder: str = "Processed"
    #: a PEM bundle trusted for the IMAP server's certificate (default: system store)
    imap_ca_file: Path | None = None
    #: a local Maildir the organisation's MTA delivers bounces into
    maildir: Path | None = None
    #: hard bounces (address-related 5.x.x) before an address is suppressed
    hard_limit: int = Field(3, ge=1)
    #: soft bounces within `soft_days` days before an address is suppressed
    soft_limit: int = Field(5, ge=1)
    soft_days: int = Field(14, ge=1)
    #: how often the service reads the mailbox
    interval_s: float = Field(60, gt=0)
    mailgun_signing_key: SecretStr | None = None
    #: SendGrid's "verification key": base64 DER of the ECDSA P-256 public key
    sendgrid_public_key: str | None = None
    postmark_username: str | None = None
    postmark_password: SecretStr | None = None


class AdminSettings(BaseModel):
    """The admin listener: health, metrics, dashboard, API (loopback by default)."""

    host: str = "127.0.0.1"
    port: int = Field(8081, ge=0, le=65535)
    #: dashboard users (argon2 hashes) and API tokens (hashed), `campaignbot admin add-user`
    users_file: Path = Path("var/admin-users.toml")
    #: mark the dashboard's session cookie Secure (set when the admin port is behind https)
    secure_cookies: bool = False


class Settings(BaseSettings):
    """Everything an operator sets; built once in the CLI and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="CAMPAIGNBOT_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    config: Path = Path("config/campaign.toml")
    templates: Path = Path("templates")
    database_url: str = "sqlite:///var/campaignbot.db"
    smtp: SMTPSettings = SMTPSettings()
    maildir: Path = Path("var/outbox")
    secret_key: SecretStr | None = None
    #: older keys whose links still verify (new links use SECRET_KEY): key rotation
    secret_key_fallbacks: Annotated[list[SecretStr], NoDecode, BeforeValidator(_list)] = Field(
        default_factory=list,
        description="older keys whose links still work (rotation); new links use SECRET_KEY",
    )
    public_url: str = "http://127.0.0.1:8080"
    http: HTTPSettings = HTTPSettings()
    admin: AdminSettings = AdminSettings()
    #: where generated state lives (the secret key file)
    var_dir: Path = Path("var")
    #: how long a sender owns claimed deliveries; a crashed sender's claims return after it
    lease_s: float = Field(120, gt=0)
    #: VERP return path: each message's envelope sender becomes `local+TAG@domain`
    bounce_address: str | None = Field(None, pattern=r"^[^@+\s]+@[^@\s]+$")
    bounces: BounceSettings = BounceSettings()


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment; a bad variable is a ConfigError naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        problems = []
        for e in err.errors():
            variable = "CAMPAIGNBOT_" + "__".join(str(p) for p in e["loc"]).upper()
            problems.append(Problem("environment", variable, e["msg"]))
        raise ConfigError(problems) from err


#: HMAC keys shorter than this can be brute-forced offline from one token
MIN_SECRET_BYTES = 32


def _check_key(key: str, origin: str) -> str:
    if not key:
        raise ConfigError(f"{origin}: the secret key is empty")
    if len(key.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{origin}: the secret key is too short ({len(key.encode())} bytes); "
            f"use at least {MIN_SECRET_BYTES}, e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`"
        )
    return key


def _read_key_file(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ConfigError(
            f"{path}: the secret key file is readable by others "
            f"(mode {stat.filemode(mode)}); run `chmod 600 {path}`"
        )
    return _check_key(path.read_text().strip(), str(path))


def _create_key_file(path: Path) -> str:
    """Write a new key with mode 0600 from the start, atomically: a temporary file,
    then a hard link to the final name, which fails if another process got there
    first (then its key is the one)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _read_key_file(path)
    finally:
        temporary.unlink(missing_ok=True)
    return key


def secret_key(settings: Settings) -> str:
    """The key that signs links: the setting, else `var/secret.key`, generated once.

    ConfigError for a key under 32 bytes, an empty key file or one others can read.
    """
    if settings.secret_key is not None:
        return _check_key(settings.secret_key.get_secret_value(), "CAMPAIGNBOT_SECRET_KEY")
    path = settings.var_dir / "secret.key"
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        return _create_key_file(path)


def secret_key_fallbacks(settings: Settings) -> list[str]:
    """Older keys that still verify links (`CAMPAIGNBOT_SECRET_KEY_FALLBACKS`)."""
    return [
        _check_key(key.get_secret_value(), "CAMPAIGNBOT_SECRET_KEY_FALLBACKS")
        for key in settings.secret_key_fallbacks
    ]
