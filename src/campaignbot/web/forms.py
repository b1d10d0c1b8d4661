"""Pure helpers of the web pages: what the forms offer and accept, CSRF tokens, the
visitor's language, rate limits, and the home page's view of the events.

Nothing here does I/O; the clock is an argument (or injected), so every piece is
testable on its own and `web.py` stays the thin Starlette layer.
"""

from __future__ import annotations

import secrets
import time
import zoneinfo
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from babel import Locale
from itsdangerous import BadData, URLSafeTimedSerializer

from campaignbot.campaign.model import Campaign, localize
from campaignbot.campaign.planning import event_deadline, event_start
from campaignbot.email.i18n import babel_locale, format_when
from campaignbot.subscribers.model import (
    SubscriberInput,
    normalize_countries,
    normalize_email,
    normalize_name,
    normalize_timezone,
    normalize_topics,
)

#: Form fields longer than this are rejected before any validation looks at them.
MAX_FIELD_CHARS = 1000

#: Field name -> an error key of the web message catalog (`error_email`, ...).
FieldErrors = dict[str, str]


@dataclass(frozen=True)
class Choices:
    """What a form may offer: the campaign's locales, countries and topics."""

    locales: Sequence[str]
    countries: Sequence[str]
    topics: Sequence[str]
    default_locale: str
    default_timezone: str
    timezones: frozenset[str] = frozenset()


@dataclass
class FormValues:
    """The values as typed, to show the form again after an error."""

    email: str = ""
    name: str = ""
    locale: str = ""
    timezone: str = ""
    countries: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Preferences:
    """A validated preferences form."""

    locale: str
    timezone: str
    countries: frozenset[str]
    topics: frozenset[str]


def _one(fields: Mapping[str, Sequence[str]], name: str) -> str:
    values = fields.get(name) or [""]
    value = values[0]
    return value if len(value) <= MAX_FIELD_CHARS else value[:MAX_FIELD_CHARS] + "\u2026"


def _many(fields: Mapping[str, Sequence[str]], name: str) -> list[str]:
    return [v[:MAX_FIELD_CHARS] for v in fields.get(name) or []][:100]


def form_values(fields: Mapping[str, Sequence[str]]) -> FormValues:
    """The raw values of a subscribe or preferences form (nothing validated yet)."""
    return FormValues(
        email=_one(fields, "email"),
        name=_one(fields, "name"),
        locale=_one(fields, "locale"),
        timezone=_one(fields, "timezone"),
        countries=_many(fields, "countries"),
        topics=_many(fields, "topics"),
    )


def _too_long(fields: Mapping[str, Sequence[str]], names: Iterable[str]) -> str | None:
    for name in names:
        if any(len(v) > MAX_FIELD_CHARS for v in fields.get(name) or []):
            return name
    return None


def _check_choices(values: FormValues, choices: Choices, errors: FieldErrors) -> None:
    if values.locale not in choices.locales:
        errors["locale"] = "error_choice"
    try:
        if not normalize_countries(values.countries) <= set(choices.countries):
            errors["countries"] = "error_choice"
    except ValueError:
        errors["countries"] = "error_choice"
    try:
        if not normalize_topics(values.topics) <= set(choices.topics):
            errors["topics"] = "error_choice"
    except ValueError:
        errors["topics"] = "error_choice"


def parse_subscribe(
    fields: Mapping[str, Sequence[str]], choices: Choices
) -> tuple[SubscriberInput | None, FormValues, FieldErrors]:
    """Validate the subscribe form: the subscriber to store, or the field errors.

    Language, countries and topics must be ones the page offered; no box ticked
    means "everything". New subscribers get the campaign's time zone (they can
    change it on the preferences page).
    """
    values = form_values(fields)
    errors: FieldErrors = {}
    long_field = _too_long(fields, ("email", "name"))
    if long_field is not None:
        errors[long_field] = f"error_{long_field}"
    try:
        normalize_email(values.email)
    except ValueError:
        errors["email"] = "error_email"
    try:
        normalize_name(values.name)
    except ValueError:
        errors["name"] = "error_name"
    _check_choices(values, choices, errors)
    if errors:
        return None, values, errors
    try:
        entry = SubscriberInput.create(
            values.email,
            name=values.name,
            locale=values.locale,
            timezone=choices.default_timezone,
            countries=values.countries,
            topics=values.topics,
        )
    except ValueError:  # everything was checked above; a safety net all the same
        return None, values, {"email": "error_email"}
    return entry, values, {}


def parse_preferences(
    fields: Mapping[str, Sequence[str]], choices: Choices
) -> tuple[Preferences | None, FormValues, FieldErrors]:
    """Validate the preferences form (language, time zone, countries, topics)."""
    values = form_values(fields)
    errors: FieldErrors = {}
    _check_choices(values, choices, errors)
    timezone = ""
    try:
        # only the zones the page offers: ZoneInfo alone would also take "localtime"
        if values.timezone not in choices.timezones:
            raise ValueError(values.timezone)
        timezone = normalize_timezone(values.timezone)
    except ValueError:
        errors["timezone"] = "error_timezone"
    if errors:
        return None, values, errors
    return (
        Preferences(
            locale=values.locale,
            timezone=timezone,
            countries=normalize_countries(values.countries),
            topics=normalize_topics(values.topics),
        ),
        values,
        {},
    )


# -- language ----------------------------------------------------------------------


def parse_accept_language(header: str) -> list[str]:
    """Language tags of an `Accept-Language` header, most wanted first; junk is ignored."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:50]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or len(tag) > 35:
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if 0 < quality <= 1:
            ranked.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


def choose_locale(
    requested: str | None, accept_language: str, available: Sequence[str], default: str
) -> str:
    """`?lang=` if offered, else the best `Accept-Language` match, else `default`."""

    def match(tag: str) -> str | None:
        tag = tag.replace("_", "-").lower()
        for locale in available:
            if locale.lower().replace("_", "-") == tag:
                return locale
        base = tag.split("-")[0]
        for locale in available:
            if locale.lower().split("_")[0].split("-")[0] == base:
                return locale
        return None

    if requested:
        found = match(requested)
        if found:
            return found
    for tag in parse_accept_language(accept_language):
        found = match(tag)
        if found:
            return found
    return default


# -- CSRF --------------------------------------------------------------------------


class CsrfTokens:
    """Double-submit CSRF protection.

    The browser holds a random value in a cookie; each form carries that value
    signed (itsdangerous, with a timestamp). A forged cross-site post can make the
    browser send the cookie but cannot read it to produce the matching signed field.
    """

    def __init__(self, secret: str, *, max_age_s: int = 12 * 3600) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="campaignbot-csrf")
        self.max_age_s = max_age_s

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_urlsafe(32)

    def field(self, cookie: str) -> str:
        """The hidden field value for a browser holding `cookie`."""
        return str(self._serializer.dumps(cookie))

    def check(self, cookie: str | None, field: str | None) -> bool:
        """Whether the form field was made for this cookie, recently, with our key."""
        if not cookie or not field or len(field) > 500:
            return False
        try:
            value: Any = self._serializer.loads(field, max_age=self.max_age_s)
        except BadData:
            return False
        return isinstance(value, str) and secrets.compare_digest(value, cookie)


# -- rate limit --------------------------------------------------------------------


class RateLimit:
    """At most `limit` hits per `window_s` per key (a sliding window in memory).

    Per process: several `campaignbot run` processes each allow `limit`, which is
    fine for slowing down form abuse; the confirmation mail itself is idempotent.
    """

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str) -> float | None:
        """Count one hit; None when allowed, else seconds until the next one is."""
        now = self._clock()
        horizon = now - self.window_s
        if len(self._hits) >= self._max_keys:
            self._prune(horizon)
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(hits[0] - horizon, 0.0)
        hits.append(now)
        return None

    def _prune(self, horizon: float) -> None:
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= horizon]:
            del self._hits[key]
        while len(self._hits) >= self._max_keys:  # still full: forget the oldest
            del self._hits[next(iter(self._hits))]


# -- what the pages show -------------------------------------------------------------


def fill(text: str, **values: str) -> str:
    """`{name}` placeholders of a catalog text; not str.format, so a stray brace in a
    translation cannot break the page."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def native_name(code: str) -> str:
    """A language in its own words: "suomi" -> "Suomi"."""
    name = Locale.parse(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]


def timezones() -> list[str]:
    """The IANA zones a subscriber may choose (no `Etc/GMT+3`, `posix/...` aliases)."""
    return sorted(
        z
        for z in zoneinfo.available_timezones()
        if ("/" in z and not z.startswith(("Etc/", "SystemV/", "posix/", "right/"))) or z == "UTC"
    )


def form_options(
    campaign: Campaign, locales: Sequence[str], catalog: Mapping[str, Any], lang: str
) -> dict[str, list[tuple[str, str]]]:
    """(value, label) pairs for the language select and the country and topic boxes."""
    territories = Locale.parse(lang).territories
    countries = sorted(
        ((code, str(territories.get(code, code))) for code in campaign.countries),
        key=lambda option: option[1],
    )
    names = catalog.get("topics", {})
    topics = [
        (slug, str(names.get(slug) or slug.replace("-", " ").capitalize()))
        for slug in campaign.topics
    ]
    return {
        "locale_options": [(code, native_name(code)) for code in locales],
        "country_options": countries,
        "topic_options": topics,
    }


def event_views(
    campaign: Campaign,
    catalog: Mapping[str, Any],
    lang: str,
    *,
    now: datetime,
    calendar_path: str,
) -> list[dict[str, Any]]:
    """The events not over yet, soonest first, in `lang`, each at its own local time;
    each links to its entry of the feed at `calendar_path`."""
    info = campaign.campaign
    locale = babel_locale(lang, info.default_locale)
    upcoming = sorted(
        (e for e in campaign.events if event_deadline(e, info.send_at) > now),
        key=lambda e: event_start(e, info.send_at),
    )
    views = []
    for event in upcoming:
        # an aware instant: format_when would read a naive time in the server's zone
        start = event_start(event, info.send_at).astimezone(event.timezone)
        moment = event.when if event.all_day else start
        action = None
        if event.action is not None:
            text = localize(event.action.text, lang, info.default_locale)
            action = {"text": text, "url": event.action.url}
        status = event.status.value
        views.append(
            {
                "id": event.id,
                "title": event.title_for(lang, info.default_locale),
                "summary": event.summary_for(lang, info.default_locale),
                "when": format_when(moment, locale, event.timezone).text,
                "iso": moment.isoformat(),
                "status": status,
                "status_label": catalog.get(f"status_{status}", "")
                if status != "scheduled"
                else "",
                "action": action,
                "links": event.links,
                "ics_url": f"{calendar_path}?{urlencode({'event': event.id, 'lang': lang})}",
            }
        )
    return views
