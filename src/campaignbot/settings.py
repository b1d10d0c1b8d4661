"""Operator settings from the environment (`CAMPAIGNBOT_*`), `.env` and secret files.

`Settings` is the one registry: every variable is a field here (nested groups with
`__`), with its type, default and `description` as help. From it come the README's
configuration table (`python -m campaignbot.settings`), the unknown-variable check and
the `*_FILE` / systemd-credential variants of every secret. Nothing is listed twice, so
a field added to any group later is picked up by all three.
"""

from __future__ import annotations

import difflib
import inspect
import ipaddress
import json
import os
import re
import secrets
import stat
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from campaignbot.errors import ConfigError, Problem

PREFIX = "CAMPAIGNBOT_"
#: names tests, CI and benchmarks may use freely; never settings
RESERVED_PREFIXES = ("CAMPAIGNBOT_TEST_", "CAMPAIGNBOT_CI_", "CAMPAIGNBOT_BENCH_")


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

    #: the relay's host name; unset: mail goes to the Maildir outbox
    host: str | None = None
    port: int = Field(587, ge=1, le=65535, description="the relay's port")
    #: SMTP AUTH user name (also the XOAUTH2 account)
    username: str | None = None
    #: SMTP AUTH password
    password: SecretStr | None = None
    #: `none`, `starttls` or `tls` (implicit TLS, usually port 465)
    tls: TLSMode = TLSMode.STARTTLS
    max_connections: int = Field(
        8, ge=1, le=256, description="SMTP connections at most (sends and health checks)"
    )
    rate_limit: float = Field(0, ge=0, description="messages per second, 0 = unlimited")
    timeout_s: float = Field(30, gt=0, description="seconds per SMTP command")
    max_attempts: int = Field(6, ge=1, description="attempts before a delivery fails")
    retry_for_s: float = Field(
        24 * 3600, gt=0, description="give up retrying this long after the first attempt"
    )
    #: PEM file of the CA (or CAs) that signed a private relay's certificate
    ca_file: Path | None = None
    #: the EHLO name (default: this host's FQDN); relays refuse names that are not fully
    #: qualified (504 5.5.2)
    local_hostname: str | None = None
    #: client certificate (PEM) for relays that authenticate clients by certificate
    client_cert: Path | None = None
    #: the client certificate's key (PEM), unless it is inside CLIENT_CERT
    client_key: Path | None = None
    #: `auto` (CRAM-MD5, else PLAIN, else LOGIN, as offered), `plain`, `login`, `cram-md5`
    #: or `xoauth2`
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
    """The public web server: sign-up, confirm, unsubscribe, preferences."""

    host: str = Field("127.0.0.1", description="public web server bind address")
    port: int = Field(8080, ge=0, le=65535, description="public web server port")
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
    """The admin listener: health, metrics, dashboard and API (loopback by default)."""

    host: str = Field("127.0.0.1", description="admin listener bind address")
    port: int = Field(8081, ge=0, le=65535, description="admin listener port")
    #: dashboard users (argon2 hashes) and API tokens (hashed), `campaignbot admin add-user`
    users_file: Path = Path("var/admin-users.toml")
    #: mark the dashboard's session cookie Secure (set when the admin port is behind https)
    secure_cookies: bool = False


class Settings(BaseSettings):
    """Everything an operator sets; built once in the CLI and passed down."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        # unknown CAMPAIGNBOT_* names are reported by `load_settings` with a suggestion
        extra="ignore",
    )

    config: Path = Field(Path("config/campaign.toml"), description="campaign file (`--config`)")
    templates: Path = Field(Path("templates"), description="template folder")
    database_url: str = Field(
        "sqlite:///var/campaignbot.db", description="SQLite or `postgresql://...` database"
    )
    smtp: SMTPSettings = SMTPSettings()
    maildir: Path = Field(Path("var/outbox"), description="Maildir outbox when no SMTP host")
    secret_key: SecretStr | None = Field(
        None,
        description="signs links; at least 32 bytes (losing it breaks every link already sent)",
        json_schema_extra={"shown_default": "generated into `var/secret.key`"},
    )
    #: older keys whose links still verify (new links use SECRET_KEY): key rotation
    secret_key_fallbacks: Annotated[list[SecretStr], NoDecode, BeforeValidator(_list)] = Field(
        default_factory=list,
        description="older keys whose links still work (rotation); new links use SECRET_KEY",
    )
    public_url: str = Field(
        "",
        description="base of links in emails: scheme and host, no query (https in production)",
        json_schema_extra={"shown_default": "`http://{HTTP__HOST}:{HTTP__PORT}`"},
    )
    http: HTTPSettings = HTTPSettings()
    admin: AdminSettings = AdminSettings()
    var_dir: Path = Field(Path("var"), description="where generated state lives (the secret key)")
    lease_s: float = Field(
        120,
        gt=0,
        description="seconds a sender owns claimed deliveries; a crashed sender's claims return after",
    )
    #: VERP return path: each message's envelope sender becomes `local+TAG@domain`
    bounce_address: str | None = Field(None, pattern=r"^[^@+\s]+@[^@\s]+$")
    bounces: BounceSettings = BounceSettings()

    @field_validator("public_url")
    @classmethod
    def _valid_public_url(cls, value: str) -> str:
        if not value:
            return value  # filled from HTTP__HOST/PORT below
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{value!r} needs a scheme and a host, e.g. https://alerts.example.org"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r} must not have a query or fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _default_public_url(self) -> Settings:
        # links must follow the port the server really listens on, or every
        # confirmation link points at :8080 after HTTP__PORT is changed
        if not self.public_url:
            host = self.http.host
            if ":" in host:  # an IPv6 literal
                host = f"[{host}]"
            self.public_url = f"http://{host}:{self.http.port}"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment, then `.env`, then `*_FILE` secrets and systemd credentials."""
        # list settings take comma-separated values as well as JSON
        if type(env_settings) is EnvSettingsSource:
            env_settings.__class__ = _ListFriendlyEnv
        if type(dotenv_settings) is DotEnvSettingsSource:
            dotenv_settings.__class__ = _ListFriendlyDotEnv
        variables: dict[str, str] = {}
        for source in (dotenv_settings, env_settings):
            if isinstance(source, EnvSettingsSource):
                variables.update({k.upper(): v for k, v in source.env_vars.items() if v})
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            _SecretFiles(settings_cls, variables),
            file_secret_settings,
        )


# --- the registry --------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One `CAMPAIGNBOT_*` variable as the registry knows it."""

    variable: str
    path: tuple[str, ...]
    type: str
    default: str
    help: str
    secret: bool
    many: bool = False  # a list: commas or JSON (a secret file: one item per line)


def _unwrap_optional(annotation: Any) -> Any:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _group(annotation: Any) -> type[BaseModel] | None:
    inner = _unwrap_optional(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(_unwrap_optional(annotation)) in (list, tuple, set, frozenset)


def _is_secret(annotation: Any) -> bool:
    """A SecretStr, or a list of them (old keys kept for rotation)."""
    inner = _unwrap_optional(annotation)
    if _is_list(annotation):
        return SecretStr in typing.get_args(inner)
    return inner is SecretStr


def _type_name(annotation: Any) -> str:
    inner = _unwrap_optional(annotation)
    if _is_secret(annotation):
        return "secret list" if _is_list(annotation) else "secret"
    if isinstance(inner, type) and issubclass(inner, Enum):
        return " \\| ".join(str(m.value) for m in inner)
    if _is_list(annotation):
        return "list"
    if inner is Path:
        return "path"
    return getattr(inner, "__name__", str(inner))


def _default_text(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    default = field.get_default(call_default_factory=True)
    if default is None or default == []:
        return "unset"
    if isinstance(default, Enum):
        default = default.value
    if isinstance(default, bool):
        return str(default).lower()
    return f"`{default}`"


def _comment_help(model: type[BaseModel]) -> dict[str, str]:
    """Help written as `#:` comments above a field (the Sphinx convention), for fields
    declared without a `description`; base classes included."""
    found: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):  # no source (e.g. a frozen app): no help, not an error
            continue
        pending: list[str] = []
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
                continue
            field = re.match(r"(\w+)\s*:", stripped)
            if field and pending:
                found[field.group(1)] = " ".join(pending)
            pending = []
    return found


def iter_settings(
    model: type[BaseModel] = Settings, path: tuple[str, ...] = ()
) -> Iterator[Setting]:
    """Every variable, nested groups included, in declaration order."""
    comments = _comment_help(model)
    for name, field in model.model_fields.items():
        group = _group(field.annotation)
        if group is not None:
            yield from iter_settings(group, (*path, name))
            continue
        full = (*path, name)
        yield Setting(
            variable=PREFIX + "__".join(full).upper(),
            path=full,
            type=_type_name(field.annotation),
            default=_default_text(field),
            help=field.description or comments.get(name, ""),
            secret=_is_secret(field.annotation),
            many=_is_list(field.annotation),
        )


def known_variables() -> set[str]:
    """Every name the environment may hold: settings, whole groups as JSON, `*_FILE`."""
    names = set()
    for setting in iter_settings():
        names.add(setting.variable)
        names.update(
            PREFIX + "__".join(setting.path[:i]).upper() for i in range(1, len(setting.path))
        )
        if setting.secret:
            names.add(setting.variable + "_FILE")
    return names


def unknown_variables(names: Iterable[str], *, origin: str) -> list[Problem]:
    """A problem for each `CAMPAIGNBOT_*` name that is no setting, naming the closest one."""
    known = known_variables()
    problems = []
    for name in sorted({n.upper() for n in names}):
        if not name.startswith(PREFIX) or name.startswith(RESERVED_PREFIXES) or name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        problems.append(Problem(origin, name, f"unknown setting{hint}"))
    return problems


def markdown_table() -> str:
    """The README's configuration table, generated from the registry."""
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for s in iter_settings():
        name = f"`{s.variable}`" + (f" (or `{s.variable}_FILE`)" if s.secret else "")
        rows.append(f"| {name} | {s.type} | {s.default} | {s.help} |")
    return "\n".join(rows)


# --- sources -------------------------------------------------------------------------


def _decode_list_or_json(field: FieldInfo | None, value: Any, decode: Callable[[], Any]) -> Any:
    """`a,b` or `["a", "b"]` for a list setting; JSON for everything else."""
    if field is not None and isinstance(value, str) and _is_list(field.annotation):
        text = value.strip()
        if not text.startswith("["):
            return [item.strip() for item in text.split(",") if item.strip()]
    return decode()


class _ListFriendlyEnv(EnvSettingsSource):
    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        return _decode_list_or_json(
            field,
            value,
            lambda: super(_ListFriendlyEnv, self).decode_complex_value(field_name, field, value),
        )


class _ListFriendlyDotEnv(DotEnvSettingsSource):
    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        return _decode_list_or_json(
            field,
            value,
            lambda: super(_ListFriendlyDotEnv, self).decode_complex_value(field_name, field, value),
        )


class _SecretFiles(PydanticBaseSettingsSource):
    """Secrets read from `CAMPAIGNBOT_X_FILE` or systemd's `$CREDENTIALS_DIRECTORY/x`.

    The credential's name is the variable without the prefix, in lower case
    (`secret_key`, `smtp__password`), as `LoadCredential=secret_key:/etc/...` names it.
    """

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.variables = variables

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ walks the registry itself

    def __call__(self) -> dict[str, Any]:
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        values: dict[str, Any] = {}
        for setting in iter_settings(self.settings_cls):
            if not setting.secret or self.variables.get(setting.variable):
                continue
            path: Path | None = None
            if file_name := self.variables.get(setting.variable + "_FILE"):
                path = Path(file_name)
            elif credentials:
                candidate = Path(credentials) / setting.variable.removeprefix(PREFIX).lower()
                path = candidate if candidate.is_file() else None
            if path is None:
                continue
            try:
                text = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as err:
                raise ValueError(
                    f"{setting.variable}_FILE: cannot read {path}: {err.strerror}"
                ) from err
            target = values
            for key in setting.path[:-1]:
                target = target.setdefault(key, {})
            try:
                target[setting.path[-1]] = _file_items(text) if setting.many else text
            except ValueError as err:
                raise ValueError(f"{setting.variable}_FILE: {path}: {err}") from err
        return values


def _file_items(text: str) -> list[str]:
    """A list from a secret file: a JSON array, or one item per line (or comma)."""
    if text.lstrip().startswith("["):
        items = json.loads(text)
        if isinstance(items, list):
            return [str(item) for item in items]
    return [item.strip() for line in text.splitlines() for item in line.split(",") if item.strip()]


def _dotenv_names(env_file: Path | str | None) -> list[str]:
    from dotenv import dotenv_values

    if env_file is None or not Path(env_file).is_file():
        return []
    return [str(k) for k in dotenv_values(env_file)]


def _secret_conflicts(names: Iterable[str]) -> list[Problem]:
    present = {n.upper() for n in names}
    return [
        Problem("environment", s.variable, f"set both {s.variable} and {s.variable}_FILE")
        for s in iter_settings()
        if s.secret and s.variable in present and s.variable + "_FILE" in present
    ]


def load_settings(*, env_file: Path | None = None, **overrides: object) -> Settings:
    """Build Settings from the environment and `.env` (or `env_file`).

    An unknown `CAMPAIGNBOT_*` name or a bad value is a ConfigError naming the variable.
    """
    chosen = env_file if env_file is not None else Settings.model_config.get("env_file")
    dotenv = _dotenv_names(chosen if isinstance(chosen, str | Path) else None)
    origin_env = str(chosen) if chosen else ".env"
    problems = unknown_variables(os.environ, origin="environment")
    problems += unknown_variables(dotenv, origin=origin_env)
    problems += _secret_conflicts([*os.environ, *dotenv])
    if problems:
        raise ConfigError(problems)
    kwargs: dict[str, Any] = dict(overrides)
    if env_file is not None:
        kwargs["_env_file"] = env_file
    try:
        return Settings(**kwargs)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            variable = PREFIX + "__".join(str(p) for p in e["loc"]).upper()
            problems.append(Problem("environment", variable, e["msg"]))
        raise ConfigError(problems) from err
    except ValueError as err:  # a *_FILE that cannot be read
        raise ConfigError([Problem("environment", "", str(err))]) from err


def is_loopback(host: str | None) -> bool:
    """`localhost` or a loopback address."""
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def public_url_warnings(settings: Settings) -> list[str]:
    """Why links would not work for real subscribers while mail goes to a real relay."""
    if not settings.smtp.host or is_loopback(settings.smtp.host):
        return []
    parts = urlsplit(settings.public_url)
    warnings = []
    if parts.scheme != "https":
        warnings.append(
            f"CAMPAIGNBOT_PUBLIC_URL {settings.public_url} is not https: one-click unsubscribe"
            " (RFC 8058) at Gmail and Yahoo needs an https link"
        )
    if is_loopback(parts.hostname):
        warnings.append(
            f"CAMPAIGNBOT_PUBLIC_URL {settings.public_url} is a loopback address: links in"
            " emails will not reach this server"
        )
    return warnings


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


if __name__ == "__main__":  # pragma: no cover - `python -m campaignbot.settings` prints the table
    print(markdown_table())
