"""Operator settings from the environment (`CAMPAIGNBOT_*`) and `.env`."""

from __future__ import annotations

import re
import secrets
from enum import StrEnum
from pathlib import Path

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from campaignbot.errors import ConfigError, Problem


class TLSMode(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class SMTPAuth(StrEnum):
    """How to log in: `auto` takes the best password mechanism the server offers."""

    AUTO = "auto"
    PLAIN = "plain"
    LOGIN = "login"
    CRAM_MD5 = "cram-md5"
    XOAUTH2 = "xoauth2"


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
    #: PEM file of the CA (or CAs) that signed a private relay's certificate
    ca_file: Path | None = None
    #: the EHLO name; relays refuse names that are not fully qualified (504 5.5.2)
    local_hostname: str | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    auth: SMTPAuth = SMTPAuth.AUTO
    #: XOAUTH2 access token: a file (re-read when the token expires) ...
    oauth_token_file: Path | None = None
    #: ... or a shell command that prints it (re-run when it expires, like msmtp's passwordeval)
    oauth_token_command: str | None = None
    #: AUTH without TLS is refused except to a loopback host, unless this is true
    allow_plaintext_auth: bool = False

    @field_validator("local_hostname")
    @classmethod
    def _one_hostname(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]", value):
            raise ValueError("must be a host name or an address literal such as [192.0.2.1]")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SMTPSettings:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("CAMPAIGNBOT_SMTP__CLIENT_KEY needs CAMPAIGNBOT_SMTP__CLIENT_CERT")
        tokens = (self.oauth_token_file, self.oauth_token_command)
        if self.auth is SMTPAuth.XOAUTH2:
            if not self.username:
                raise ValueError("CAMPAIGNBOT_SMTP__AUTH=xoauth2 needs CAMPAIGNBOT_SMTP__USERNAME")
            if sum(t is not None for t in tokens) != 1:
                raise ValueError(
                    "CAMPAIGNBOT_SMTP__AUTH=xoauth2 needs exactly one of "
                    "CAMPAIGNBOT_SMTP__OAUTH_TOKEN_FILE and CAMPAIGNBOT_SMTP__OAUTH_TOKEN_COMMAND"
                )
        elif any(t is not None for t in tokens):
            raise ValueError("an OAuth token is only used with CAMPAIGNBOT_SMTP__AUTH=xoauth2")
        return self


class HTTPSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


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
    public_url: str = "http://127.0.0.1:8080"
    http: HTTPSettings = HTTPSettings()
    #: where generated state lives (the secret key file)
    var_dir: Path = Path("var")
    #: how long a sender owns claimed deliveries; a crashed sender's claims return after it
    lease_s: float = Field(120, gt=0)


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


def secret_key(settings: Settings) -> str:
    """The key that signs links: the setting, else `var/secret.key`, generated once."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = settings.var_dir / "secret.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        # O_EXCL so two processes starting together agree on one key
        try:
            with path.open("x") as f:
                f.write(key + "\n")
            path.chmod(0o600)
        except FileExistsError:
            return path.read_text().strip()
        return key
