"""Jinja2 rendering of campaign emails (alert, notice, confirm): EmailMessage or bytes.

Everything that does not depend on the subscriber is computed once and cached:
compiled templates, the event's texts and dates per (locale, time zone), subjects
that do not mention the subscriber, and the .ics attachment per event version.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    nodes,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment

from campaignbot.campaign.model import Campaign, Event, Status, localize, parse_offset
from campaignbot.email.calendar import event_ics, event_url
from campaignbot.email.i18n import When, babel_locale, format_when, relative_phrase, zone
from campaignbot.email.mime import (
    AUTO,
    B64,
    CALENDAR,
    ONE_CLICK,
    Header,
    Wire,
    as_wire,
    base64_lines,
    build_message,
    fold_line,
    mailbox,
    one_line,
    qp,
    unstructured,
)
from campaignbot.email.mime import (
    part as mime_part,
)
from campaignbot.email.personalize import (
    TOKENS,
    Parts,
    ProbeSet,
    fill_bytes,
    prepare,
    probe,
    split_bytes,
)
from campaignbot.email.tokens import LinkSigner, build_link
from campaignbot.errors import InvalidInputError, Problem, TemplateError

KINDS = ("alert", "notice", "confirm")
PARTS = ("subject", "txt", "html")
CHANGES = ("rescheduled", "postponed", "cancelled")

#: context variables that differ per subscriber; a subject without them is cached
_PERSONAL = frozenset(
    {"subscriber", "unsubscribe_url", "preferences_url", "calendar_url", "confirm_url"}
)
_CACHE_LIMIT = 20_000


@dataclass(frozen=True)
class Recipient:
    """The subscriber fields rendering needs."""

    id: int
    email: str
    name: str
    locale: str
    timezone: str


@dataclass(frozen=True)
class ActionView:
    text: str
    url: str


@dataclass(frozen=True)
class EventView:
    """`event` in templates: texts in the subscriber's locale, dates in their zone."""

    id: str
    title: str
    summary: str
    status: str
    all_day: bool
    date: str
    time: str
    timezone: str
    when: str
    action: ActionView | None
    links: tuple[str, ...]
    url: str


@dataclass(frozen=True)
class ReminderView:
    """`reminder` in templates: the offset label and a phrase like "tomorrow"."""

    label: str
    phrase: str


@dataclass(frozen=True)
class CampaignView:
    name: str
    sender: str
    sender_name: str
    sender_email: str
    default_locale: str
    url: str


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "campaign"


def _template_file(folder: Path, filename: str | None) -> str | None:
    """`templates/alert/fi.html.j2` for a file inside `folder`, else None."""
    if not filename:
        return None
    root = os.path.abspath(folder)
    path = os.path.abspath(filename)
    if os.path.commonpath([root, path]) != root:
        return None
    return str(folder / os.path.relpath(path, root))


def problem_from(err: Exception, folder: Path, fallback: str) -> Problem:
    """One `file:line: message` problem for a template error; jinja rewrites
    tracebacks so that frames carry the template's file name and line."""
    if isinstance(err, TemplateSyntaxError):
        file = _template_file(folder, err.filename) or str(folder / (err.name or fallback))
        return Problem(f"{file}:{err.lineno}", "", err.message or str(err))
    if isinstance(err, TemplateNotFound):
        return Problem(str(folder / fallback), "", f"template not found: {err.message}")
    place = ("", "")
    tb = err.__traceback__
    while tb is not None:
        found = _template_file(folder, tb.tb_frame.f_code.co_filename)
        if found is not None:
            place = (found, str(tb.tb_lineno))  # keep the deepest template frame
        tb = tb.tb_next
    file = f"{place[0]}:{place[1]}" if place[0] else str(folder / fallback)
    return Problem(file, "", str(err) or type(err).__name__)


def make_environment(folder: Path) -> SandboxedEnvironment:
    """Sandboxed, strict, HTML-autoescaped; templates are compiled once (no reload)."""
    return SandboxedEnvironment(
        loader=FileSystemLoader(folder),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=-1,
    )


def template_locales(folder: Path) -> list[str]:
    """Locales that have at least one message template (`alert/fi.txt.j2` -> fi)."""
    found = {
        path.name.split(".", 1)[0]
        for kind in KINDS
        for path in (folder / kind).glob("*.j2")
        if path.is_file()
    }
    return sorted(found)


class Renderer:
    """Renders campaign emails; one per loaded campaign and template folder."""

    def __init__(
        self, templates: Path, campaign: Campaign, *, signer: LinkSigner, public_url: str
    ) -> None:
        self.folder = templates
        self.campaign = campaign
        self.env = make_environment(templates)
        self._signer = signer
        self._public_url = public_url.rstrip("/")
        info = campaign.campaign
        self._sender = info.sender_address
        self._domain = self._sender.domain
        self._list_id = Header("List-Id", f"<{_slug(info.name)}.{self._domain}>")
        self._from = mailbox("From", self._sender.display_name, self._sender.addr_spec)
        self._campaign_view = CampaignView(
            name=info.name,
            sender=str(self._sender),
            sender_name=self._sender.display_name,
            sender_email=self._sender.addr_spec,
            default_locale=info.default_locale,
            url=self._public_url,
        )
        self._templates: dict[tuple[str, str, str], tuple[Template, str, bool]] = {}
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._last_date: tuple[datetime, bytes] | None = None

    # --- public API -------------------------------------------------------------

    def render_alert(
        self, event: Event, reminder: str, to: Recipient, *, now: datetime, sequence: int = 0
    ) -> EmailMessage:
        """The reminder `reminder` ("1d", "0", ...) of `event` for one subscriber."""
        shared = self._alert_shared(event, reminder, to)
        return self._event_message("alert", event, shared, event.status, to, now, sequence)

    def render_notice(
        self,
        event: Event,
        change: str,
        to: Recipient,
        *,
        now: datetime,
        sequence: int,
        previous_when: datetime | date | None = None,
    ) -> EmailMessage:
        """Tell a subscriber already alerted that `event` was rescheduled, postponed or
        cancelled (also when it was removed from the file); the .ics carries the new
        SEQUENCE and STATUS (CANCELLED, TENTATIVE for postponed)."""
        shared, status = self._notice_shared(event, change, to, previous_when)
        return self._event_message("notice", event, shared, status, to, now, sequence)

    def wire_alert(
        self, event: Event, reminder: str, to: Recipient, *, now: datetime, sequence: int = 0
    ) -> Wire:
        """`render_alert` as the bytes SMTP sends (CRLF, not dot-stuffed) and its
        Message-ID; the templates run once per alert shape, not per subscriber
        (see personalize.py), with the same result."""
        return self._wire(
            "alert",
            event,
            (reminder,),
            lambda: (self._alert_shared(event, reminder, to), event.status),
            to,
            now,
            sequence,
        )

    def wire_notice(
        self,
        event: Event,
        change: str,
        to: Recipient,
        *,
        now: datetime,
        sequence: int,
        previous_when: datetime | date | None = None,
    ) -> Wire:
        """`render_notice` as bytes, like `wire_alert`."""
        return self._wire(
            "notice",
            event,
            (change, previous_when),
            lambda: self._notice_shared(event, change, to, previous_when),
            to,
            now,
            sequence,
        )

    def render_confirm(self, to: Recipient, *, now: datetime) -> EmailMessage:
        """The double opt-in email with the signed confirm link."""
        context = {
            "subscriber": to,
            "campaign": self._campaign_view,
            "confirm_url": build_link(
                self._public_url, "confirm", self._signer.sign("confirm", to.id)
            ),
        }
        subject, text, html = self._parts("confirm", to.locale, context)
        return self._message(subject, text, html, to, now, None, unsubscribe_url=None)

    # --- context ------------------------------------------------------------------

    def _alert_shared(self, event: Event, reminder: str, to: Recipient) -> dict[str, Any]:
        fmt = self._format_locale("alert", to.locale)
        return {
            "event": self._event_view(event, to, fmt, event.status),
            "reminder": self._reminder_view(reminder, fmt, all_day=event.all_day),
        }

    def _notice_shared(
        self, event: Event, change: str, to: Recipient, previous_when: datetime | date | None
    ) -> tuple[dict[str, Any], Status]:
        if change not in CHANGES:
            raise InvalidInputError(f"unknown change {change!r} (known: {', '.join(CHANGES)})")
        status = event.status if change == "rescheduled" else Status(change)
        fmt = self._format_locale("notice", to.locale)
        shared = {
            "event": self._event_view(event, to, fmt, status),
            "change": change,
            "previous_when": self._previous(previous_when, event, to, fmt),
        }
        return shared, status

    def _event_message(
        self,
        kind: str,
        event: Event,
        shared: dict[str, Any],
        status: Status,
        to: Recipient,
        now: datetime,
        sequence: int,
    ) -> EmailMessage:
        context = {**self._personal(to), **shared}
        subject, text, html = self._parts(kind, to.locale, context)
        ics = self._ics(event, to.locale, now, sequence, status)
        return self._message(
            subject, text, html, to, now, ics, unsubscribe_url=context["unsubscribe_url"]
        )

    def _personal(self, to: Recipient) -> dict[str, Any]:
        sign, base = self._signer.sign, self._public_url
        return {
            "subscriber": to,
            "campaign": self._campaign_view,
            "unsubscribe_url": build_link(base, "unsubscribe", sign("unsubscribe", to.id)),
            "preferences_url": build_link(base, "preferences", sign("preferences", to.id)),
            "calendar_url": build_link(base, "calendar", sign("calendar", to.id)),
        }

    def _cached(self, key: tuple[Any, ...]) -> Any:
        return self._cache.get(key)

    def _store(self, key: tuple[Any, ...], value: Any) -> Any:
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = value
        return value

    def _format_locale(self, kind: str, locale: str) -> str:
        """Dates and phrases speak the language of the message: the subscriber's own
        locale ("en_GB" dates) when the templates are in its language, else the
        locale the templates fell back to (no German "Morgen" in an English email)."""
        lang = self.template(kind, "txt", locale)[1]
        same = locale.replace("-", "_").split("_")[0] == lang.split("_")[0]
        return locale if same else lang

    def _event_view(self, event: Event, to: Recipient, fmt: str, status: Status) -> EventView:
        # keyed on identity: a changed event is a new object; the cached entry keeps
        # the old one alive, so its id cannot be reused by another event meanwhile
        key = ("event", id(event), to.locale, fmt, to.timezone, status)
        hit = self._cached(key)
        if hit is not None and hit[0] is event:
            return hit[1]  # type: ignore[no-any-return]
        default = self.campaign.campaign.default_locale
        when = format_when(event.when, self._locale(fmt), self._zone(to.timezone))
        action = None
        if event.action is not None:
            action = ActionView(localize(event.action.text, to.locale, default), event.action.url)
        view = EventView(
            id=event.id,
            title=event.title_for(to.locale, default),
            summary=event.summary_for(to.locale, default),
            status=str(status),
            all_day=event.all_day,
            date=when.date,
            time=when.time,
            timezone=when.timezone,
            when=when.text,
            action=action,
            links=event.links,
            url=event_url(event) or self._public_url,
        )
        return self._store(key, (event, view))[1]  # type: ignore[no-any-return]

    def _reminder_view(self, reminder: str, locale: str, *, all_day: bool) -> ReminderView:
        key = ("reminder", reminder, locale, all_day)
        hit = self._cached(key)
        if hit is None:
            try:
                offset = parse_offset(reminder)
            except ValueError as err:
                raise InvalidInputError(f"reminder: {err}") from None
            phrase = relative_phrase(offset, self._locale(locale), all_day=all_day)
            hit = self._store(key, ReminderView(offset.label, phrase))
        return hit  # type: ignore[no-any-return]

    def _previous(
        self, moment: datetime | date | None, event: Event, to: Recipient, fmt: str
    ) -> When | None:
        if moment is None:
            return None
        return format_when(moment, self._locale(fmt), self._zone(to.timezone))

    def _locale(self, name: str) -> Locale:
        return babel_locale(name, self.campaign.campaign.default_locale)

    def _zone(self, name: str) -> ZoneInfo:
        return zone(name, self.campaign.campaign.timezone)

    def _ics(
        self, event: Event, locale: str, now: datetime, sequence: int, status: Status
    ) -> MIMEPart:
        """A fresh attachment part over the cached, encoded calendar."""
        # DTSTAMP to the minute, so one send run shares a single attachment
        stamp = _minute(now)
        key = ("ics", id(event), locale, sequence, stamp, status)
        hit = self._cached(key)
        if hit is None or hit[0] is not event:
            data = event_ics(
                event,
                self.campaign.campaign,
                locale=locale,
                now=stamp,
                sequence=sequence,
                status=status,
            )
            disposition = Header("Content-Disposition", f'attachment; filename="{event.id}.ics"')
            hit = self._store(key, (event, base64_lines(data), disposition))
        return mime_part(CALENDAR, B64, hit[1], hit[2])

    # --- templates ----------------------------------------------------------------

    def _locale_chain(self, locale: str) -> Iterator[str]:
        normal = locale.replace("-", "_")
        seen: set[str] = set()
        for name in (locale, normal, normal.split("_")[0], self.campaign.campaign.default_locale):
            if name and name not in seen:
                seen.add(name)
                yield name

    def template(self, kind: str, part: str, locale: str) -> tuple[Template, str, bool]:
        """The template for `kind`/`part` in `locale`, falling back per file to the
        language and then the default locale; with its locale and whether its
        output is the same for every subscriber."""
        key = (kind, part, locale)
        found = self._templates.get(key)
        if found is not None:
            return found
        default = self.campaign.campaign.default_locale
        names = [f"{kind}/{loc}.{part}.j2" for loc in self._locale_chain(locale)]
        try:
            template = self.env.select_template(names)
        except TemplateNotFound as err:
            raise TemplateError([missing_template(self.folder, kind, part, default)]) from err
        except TemplateSyntaxError as err:
            raise TemplateError([problem_from(err, self.folder, names[0])]) from err
        name = template.name or names[-1]
        lang = name.split("/")[-1].split(".", 1)[0]
        found = (template, lang, self._is_shared(name))
        self._templates[key] = found
        return found

    def _is_shared(self, name: str) -> bool:
        assert self.env.loader is not None
        source = self.env.loader.get_source(self.env, name)[0]
        tree = self.env.parse(source)
        if any(True for _ in tree.find_all((nodes.Extends, nodes.Include, nodes.Import))):
            return False
        if any(True for _ in tree.find_all(nodes.FromImport)):
            return False
        return not meta.find_undeclared_variables(tree) & _PERSONAL

    def _render(self, kind: str, part: str, locale: str, context: dict[str, Any]) -> str:
        template, lang, shared = self.template(kind, part, locale)
        key: tuple[Any, ...] = ()
        if shared:
            key = (
                "out",
                template.name,
                *((k, v) for k, v in sorted(context.items()) if k not in _PERSONAL),
            )
            hit = self._cached(key)
            if hit is not None:
                return hit  # type: ignore[no-any-return]
        try:
            out = template.render({**context, "lang": lang})
        except Exception as err:  # a template is organizer-written code
            raise TemplateError([problem_from(err, self.folder, template.name or "")]) from err
        return self._store(key, out) if shared else out

    def _parts(self, kind: str, locale: str, context: dict[str, Any]) -> tuple[str, str, str]:
        return (
            one_line(self._render(kind, "subject", locale, context)),
            self._render(kind, "txt", locale, context),
            self._render(kind, "html", locale, context),
        )

    # --- fast path: render once per shape, fill in each subscriber ----------------

    def _wire(
        self,
        kind: str,
        event: Event,
        variant: tuple[Any, ...],
        context: Callable[[], tuple[dict[str, Any], Status]],
        to: Recipient,
        now: datetime,
        sequence: int,
    ) -> Wire:
        """The message built once per shape: kind, event, `variant` (the reminder; the
        change and previous date), the subscriber's locale and zone, name or not,
        SEQUENCE and the .ics minute. `context` makes the templates' shared context,
        only when the shape is new (this runs once per message)."""
        stamp = _minute(now)  # the .ics DTSTAMP: one shape per minute
        key = ("wire", kind, id(event), to.locale, to.timezone, bool(to.name), sequence, stamp)
        key += variant
        hit = self._cached(key)
        if hit is None or hit[0] is not event:
            shared, status = context()
            shape = self._shape(kind, event, shared, status, to, now, sequence)
            hit = self._store(key, (event, shape, shared, status))
        _, shape, shared, status = hit
        if shape is None or not to.email.isascii():
            message = self._event_message(kind, event, shared, status, to, now, sequence)
            return Wire(as_wire(message), str(message["Message-ID"]))
        return self._personalized(shape, to, now)

    def _shape(
        self,
        kind: str,
        event: Event,
        shared: dict[str, Any],
        status: Status,
        to: Recipient,
        now: datetime,
        sequence: int,
    ) -> Shape | None:
        """The message for every subscriber like `to` (locale, zone, name or not),
        split where the subscriber's values go; None if the templates need the slow path."""
        base = self._public_url

        def render(probes: ProbeSet) -> tuple[str, str, str]:
            context: dict[str, Any] = {
                "subscriber": probes.subscriber,
                "campaign": self._campaign_view,
                **shared,
            }
            for slot in TOKENS:
                context[f"{slot}_url"] = probe(build_link(base, slot, probes.tokens[slot]), probes)
            return (
                self._render(kind, "subject", to.locale, context),
                self._render(kind, "txt", to.locale, context),
                self._render(kind, "html", to.locale, context),
            )

        parts = prepare(render, has_name=bool(to.name), locale=to.locale, timezone=to.timezone)
        if parts is None:
            return None
        fixed = len(parts.subject) == 1
        marks = {
            "subject": self._subject(one_line(parts.subject[0])) if fixed else _mark("Subject"),
            "to": _mark("To"),
            "date": _mark("Date"),
            "msgid": _mark("Message-ID"),
            "unsub": _mark("List-Unsubscribe"),
        }
        headers = self._headers(*marks.values())
        attachment = self._ics(event, to.locale, now, sequence, status)
        data = as_wire(build_message(headers, _TEXT_MARK, _HTML_MARK, attachment))
        markers = {name: fold_line(header) for name, header in marks.items()}
        markers |= {"text": _TEXT_MARK.encode(), "html": _HTML_MARK.encode()}
        if fixed:
            del markers["subject"]
        skeleton = split_bytes(data, markers)
        if skeleton is None:
            return None
        return Shape(parts, skeleton)

    def _personalized(self, shape: Shape, to: Recipient, now: datetime) -> Wire:
        tokens = self._signer.sign_many(TOKENS, to.id)
        values = {"name": to.name, "email": to.email, **tokens}
        subject, text, html = shape.parts.render_wire(values)
        message_id = make_msgid(domain=self._domain)
        unsubscribe_url = build_link(self._public_url, "unsubscribe", tokens["unsubscribe"])
        lines = {
            "subject": b"",
            "to": fold_line(mailbox("To", to.name, to.email)),
            "date": self._date_line(now),
            "msgid": fold_line(Header("Message-ID", message_id)),
            "unsub": fold_line(_list_unsubscribe(unsubscribe_url)),
            "text": text,
            "html": html,
        }
        if len(shape.parts.subject) > 1:
            lines["subject"] = fold_line(unstructured("Subject", subject))
        return Wire(fill_bytes(shape.skeleton, lines), message_id)

    def _date_line(self, now: datetime) -> bytes:
        last = self._last_date
        if last is None or last[0] != now:
            last = self._last_date = (now, fold_line(Header("Date", format_datetime(_aware(now)))))
        return last[1]

    # --- message ------------------------------------------------------------------

    def _message(
        self,
        subject: str,
        text: str,
        html: str,
        to: Recipient,
        now: datetime,
        attachment: MIMEPart | None,
        *,
        unsubscribe_url: str | None,
    ) -> EmailMessage:
        headers = self._headers(
            self._subject(subject),
            mailbox("To", to.name, to.email),
            Header("Date", format_datetime(_aware(now))),
            Header("Message-ID", make_msgid(domain=self._domain)),
            None if unsubscribe_url is None else _list_unsubscribe(unsubscribe_url),
        )
        return build_message(headers, qp(text), qp(html), attachment)

    def _subject(self, subject: str) -> Header:
        header = self._cached(("subject", subject))
        if header is None:
            header = self._store(("subject", subject), unstructured("Subject", subject))
        return header  # type: ignore[no-any-return]

    def _headers(
        self, subject: Header, to: Header, date: Header, message_id: Header, unsub: Header | None
    ) -> list[Header]:
        """Every header before MIME-Version, in order (the fast path relies on it)."""
        headers = [subject, self._from, to, date, message_id, self._list_id]
        if unsub is not None:
            headers += [unsub, ONE_CLICK, AUTO]
        return headers


@dataclass(frozen=True)
class Shape:
    """One message shape: the split template output and the message bytes with
    slots for the per-subscriber headers and bodies."""

    parts: Parts
    skeleton: tuple[bytes | str, ...]


_TEXT_MARK = "@@campaignbot-text@@"
_HTML_MARK = "@@campaignbot-html@@"


def _mark(name: str) -> Header:
    return Header(name, f"@@campaignbot-{name.lower()}@@")


def _minute(now: datetime) -> datetime:
    return _aware(now).astimezone(UTC).replace(second=0, microsecond=0)


def _list_unsubscribe(url: str) -> Header:
    # RFC 8058 one-click: mail providers POST to this URL. One line, never
    # folded: a URL split into encoded-words would not work.
    return Header("List-Unsubscribe", f"<{url}>")


def missing_template(folder: Path, kind: str, part: str, default: str) -> Problem:
    name = folder / kind / f"{default}.{part}.j2"
    return Problem(str(name), "", f"missing (every locale falls back to {default!r})")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
