"""Jinja2 rendering of campaign emails (alert, notice, confirm): EmailMessage or bytes.

Everything that does not depend on the subscriber is computed once and cached:
compiled templates, the event's texts and dates per (locale, time zone), subjects
that do not mention the subscriber, and the .ics attachment per event version.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from jinja2 import (
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    nodes,
)

from campaignbot.campaign.model import Campaign, Event, Status, localize, parse_offset
from campaignbot.email.cache import BoundedCache
from campaignbot.email.calendar import attachment_method, event_ics, event_url
from campaignbot.email.fast_path import (
    HTML_MARK,
    TEXT_MARK,
    TOKENS,
    ProbeSet,
    Shape,
    fill_shape,
    make_shape,
    probe,
)
from campaignbot.email.i18n import (
    When,
    babel_locale,
    format_venue_time,
    format_when,
    relative_phrase,
    zone,
    zone_name,
)
from campaignbot.email.mime import (
    AUTO,
    B64,
    CALENDAR,
    CALENDAR_CANCEL,
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
from campaignbot.email.templates import (
    KINDS,
    PARTS,
    make_environment,
    missing_template,
    problem_from,
)
from campaignbot.email.tokens import LinkSigner, build_link, calendar_feed_url
from campaignbot.email.views import (
    MINUTE,
    ActionView,
    CampaignView,
    EventView,
    Recipient,  # re-exported: callers build one to render for
    ReminderView,
    aware,
    time_to,
)
from campaignbot.errors import InvalidInputError, TemplateError

__all__ = ["CHANGES", "KINDS", "PARTS", "Recipient", "Renderer", "Shape"]

CHANGES = ("rescheduled", "postponed", "cancelled")

#: context variables that differ per subscriber; a subject without them is cached
_PERSONAL = frozenset(
    {"subscriber", "unsubscribe_url", "preferences_url", "calendar_url", "confirm_url"}
)
_CACHE_LIMIT = 20_000

#: a message shape with what it was made from (its Event, shared context and status)
_ShapeEntry = tuple[Event, Shape | None, dict[str, Any], Status]


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "campaign"


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
        self._views: dict[str, tuple[CampaignView, Header]] = {}
        self._templates: dict[tuple[str, str, str], tuple[Template, str, bool]] = {}
        # one cache per kind of thing, each forgetting all when full (a send run's
        # working set is small); event entries keep their Event, whose identity is
        # checked on a hit, so a changed event with the same id is never served stale
        self._event_views: BoundedCache[tuple[str, str, str, str, Status], tuple[Event, EventView]]
        self._event_views = BoundedCache(_CACHE_LIMIT)
        self._reminder_views: BoundedCache[tuple[str, str, bool, int, int], ReminderView]
        self._reminder_views = BoundedCache(_CACHE_LIMIT)
        self._attachments: BoundedCache[
            tuple[str, str, int, datetime, Status], tuple[Event, str, Header]
        ] = BoundedCache(_CACHE_LIMIT)
        #: shared template outputs, keyed by template and the context they depend on
        self._outputs: BoundedCache[tuple[object, ...], str] = BoundedCache(_CACHE_LIMIT)
        self._subjects: BoundedCache[str, Header] = BoundedCache(_CACHE_LIMIT)
        self._shapes: BoundedCache[tuple[object, ...], _ShapeEntry] = BoundedCache(_CACHE_LIMIT)
        self._last_date: tuple[datetime, bytes] | None = None

    def campaign_view(self, locale: str) -> CampaignView:
        """`campaign` for templates in `locale`: its name, sender and footer texts."""
        return self._localized(locale)[0]

    def _localized(self, locale: str) -> tuple[CampaignView, Header]:
        """The campaign view and the From: header for `locale`, built once each."""
        found = self._views.get(locale)
        if found is None:
            info = self.campaign.campaign
            sender_name = info.sender_name_for(locale)
            feed = f"{self._public_url}/events.ics"
            lang = locale.replace("-", "_").split("_")[0]
            view = CampaignView(
                name=info.name_for(locale),
                sender=str(self._sender),
                sender_name=sender_name,
                sender_email=self._sender.addr_spec,
                default_locale=info.default_locale,
                url=self._public_url,
                organization=info.organization_for(locale),
                privacy_url=info.privacy_link(self._public_url),
                feed_url=f"{feed}?lang={lang}",
                webcal_url="webcal://" + feed.split("://", 1)[-1] + f"?lang={lang}",
            )
            sender = mailbox("From", sender_name, self._sender.addr_spec)
            found = self._views[locale] = (view, sender)
        return found

    # --- public API -------------------------------------------------------------

    def render_alert(
        self, event: Event, reminder: str, to: Recipient, *, now: datetime, sequence: int = 0
    ) -> EmailMessage:
        """The reminder `reminder` ("1d", "0", ...) of `event` for one subscriber."""
        shared = self._alert_shared(event, reminder, to, now)
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
        (see fast_path.py), with the same result."""
        return self._wire(
            "alert",
            event,
            (reminder,),
            lambda: (self._alert_shared(event, reminder, to, now), event.status),
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
            "campaign": self.campaign_view(to.locale),
            "confirm_url": build_link(
                self._public_url, "confirm", self._signer.sign("confirm", to.id, to.nonce)
            ),
        }
        subject, text, html = self._parts("confirm", to.locale, context)
        return self._message(subject, text, html, to, now, None, unsubscribe_url=None)

    # --- context ------------------------------------------------------------------

    def _alert_shared(
        self, event: Event, reminder: str, to: Recipient, now: datetime
    ) -> dict[str, Any]:
        fmt = self._format_locale("alert", to.locale)
        return {
            "event": self._event_view(event, to, fmt, event.status),
            "reminder": self._reminder_view(reminder, fmt, event, now),
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
            "campaign": self.campaign_view(to.locale),
            "unsubscribe_url": build_link(
                base, "unsubscribe", sign("unsubscribe", to.id, to.nonce)
            ),
            "preferences_url": build_link(
                base, "preferences", sign("preferences", to.id, to.nonce)
            ),
            # the public feed: a calendar app polls it for years, it must not carry a token
            "calendar_url": calendar_feed_url(base),
        }

    def _format_locale(self, kind: str, locale: str) -> str:
        """Dates and phrases speak the language of the message: the subscriber's own
        locale ("en_GB" dates) when the templates are in its language, else the
        locale the templates fell back to (no German "Morgen" in an English email)."""
        lang = self.template(kind, "txt", locale)[1]
        same = locale.replace("-", "_").split("_")[0] == lang.split("_")[0]
        return locale if same else lang

    def _event_view(self, event: Event, to: Recipient, fmt: str, status: Status) -> EventView:
        key = (event.id, to.locale, fmt, to.timezone, status)
        hit = self._event_views.get(key)
        if hit is not None and hit[0] is event:
            return hit[1]
        default = self.campaign.campaign.default_locale
        moment = event.when  # aware since validation
        locale, reader = self._locale(fmt), self._zone(to.timezone)
        when = format_when(moment, locale, reader)
        venue_time = venue_zone = ""
        if isinstance(moment, datetime):
            venue_time = format_venue_time(moment, locale, event.timezone, reader)
            venue_zone = zone_name(moment, event.timezone, locale) if venue_time else ""
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
            venue_time=venue_time,
            venue_zone=venue_zone,
        )
        return self._event_views.put(key, (event, view))[1]

    def _reminder_view(
        self, reminder: str, locale: str, event: Event, now: datetime
    ) -> ReminderView:
        days, lead = time_to(event, now)
        key = (reminder, locale, event.all_day, days, lead // MINUTE)
        hit = self._reminder_views.get(key)
        if hit is None:
            try:
                offset = parse_offset(reminder)
            except ValueError as err:
                raise InvalidInputError(f"reminder: {err}") from None
            phrase = relative_phrase(
                offset, self._locale(locale), all_day=event.all_day, days=days, lead=lead
            )
            hit = self._reminder_views.put(key, ReminderView(offset.label, phrase))
        return hit

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
        key = (event.id, locale, sequence, stamp, status)
        hit = self._attachments.get(key)
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
            hit = self._attachments.put(key, (event, base64_lines(data), disposition))
        content_type = CALENDAR_CANCEL if attachment_method(status) == "CANCEL" else CALENDAR
        return mime_part(content_type, B64, hit[1], hit[2])

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
        key: tuple[object, ...] = ()
        if shared:
            key = (
                template.name,
                *((k, v) for k, v in sorted(context.items()) if k not in _PERSONAL),
            )
            hit = self._outputs.get(key)
            if hit is not None:
                return hit
        try:
            out = template.render({**context, "lang": lang})
        except Exception as err:  # a template is organizer-written code
            raise TemplateError([problem_from(err, self.folder, template.name or "")]) from err
        return self._outputs.put(key, out) if shared else out

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
        key = (kind, event.id, to.locale, to.timezone, bool(to.name), sequence, stamp, *variant)
        hit = self._shapes.get(key)
        if hit is None or hit[0] is not event:
            shared, status = context()
            shape = self._shape(kind, event, shared, status, to, now, sequence)
            hit = self._shapes.put(key, (event, shape, shared, status))
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
                "campaign": self.campaign_view(to.locale),
                **shared,
            }
            for slot in TOKENS:
                context[f"{slot}_url"] = probe(build_link(base, slot, probes.tokens[slot]), probes)
            context["calendar_url"] = calendar_feed_url(base)  # public, the same for all
            return (
                self._render(kind, "subject", to.locale, context),
                self._render(kind, "txt", to.locale, context),
                self._render(kind, "html", to.locale, context),
            )

        def message(marks: Mapping[str, Header]) -> bytes:
            headers = self._headers(
                marks["subject"],
                marks["to"],
                marks["date"],
                marks["msgid"],
                marks["unsub"],
                locale=to.locale,
            )
            attachment = self._ics(event, to.locale, now, sequence, status)
            return as_wire(build_message(headers, TEXT_MARK, HTML_MARK, attachment))

        return make_shape(
            render,
            has_name=bool(to.name),
            locale=to.locale,
            timezone=to.timezone,
            fixed_subject=self._subject,
            message=message,
        )

    def _personalized(self, shape: Shape, to: Recipient, now: datetime) -> Wire:
        tokens = self._signer.sign_many(TOKENS, to.id, to.nonce)
        message_id = make_msgid(domain=self._domain)
        unsubscribe_url = build_link(self._public_url, "unsubscribe", tokens["unsubscribe"])
        lines = {
            "to": fold_line(mailbox("To", to.name, to.email)),
            "date": self._date_line(now),
            "msgid": fold_line(Header("Message-ID", message_id)),
            "unsub": fold_line(_list_unsubscribe(unsubscribe_url)),
        }
        values = {"name": to.name, "email": to.email, **tokens}
        return Wire(fill_shape(shape, values, lines), message_id)

    def _date_line(self, now: datetime) -> bytes:
        last = self._last_date
        if last is None or last[0] != now:
            last = self._last_date = (now, fold_line(Header("Date", format_datetime(aware(now)))))
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
            Header("Date", format_datetime(aware(now))),
            Header("Message-ID", make_msgid(domain=self._domain)),
            None if unsubscribe_url is None else _list_unsubscribe(unsubscribe_url),
            locale=to.locale,
        )
        return build_message(headers, qp(text), qp(html), attachment)

    def _subject(self, subject: str) -> Header:
        header = self._subjects.get(subject)
        if header is None:
            header = self._subjects.put(subject, unstructured("Subject", subject))
        return header

    def _headers(
        self,
        subject: Header,
        to: Header,
        date: Header,
        message_id: Header,
        unsub: Header | None,
        *,
        locale: str,
    ) -> list[Header]:
        """Every header before MIME-Version, in order (the fast path relies on it);
        From: carries the sender's display name in the subscriber's language."""
        sender = self._localized(locale)[1]
        headers = [subject, sender, to, date, message_id, self._list_id]
        if unsub is not None:
            headers += [unsub, ONE_CLICK, AUTO]
        return headers


def _minute(now: datetime) -> datetime:
    return aware(now).astimezone(UTC).replace(second=0, microsecond=0)


def _list_unsubscribe(url: str) -> Header:
    # RFC 8058 one-click: mail providers POST to this URL. One line, never
    # folded: a URL split into encoded-words would not work.
    return Header("List-Unsubscribe", f"<{url}>")
