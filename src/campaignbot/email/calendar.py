"""iCalendar (RFC 5545) for campaign events: one event for emails, a feed for the web."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta

from icalendar import Calendar
from icalendar import Event as VEvent

from campaignbot.campaign.model import CampaignInfo, Event, Status, localize

PRODID = "-//campaignbot//campaign alerts//EN"

_STATUS = {
    Status.SCHEDULED: "CONFIRMED",
    Status.POSTPONED: "TENTATIVE",
    Status.CANCELLED: "CANCELLED",
}


def event_uid(event: Event, campaign: CampaignInfo) -> str:
    """Stable across config edits and messages: `<event-id>@<sender domain>`."""
    return f"{event.id}@{campaign.sender_address.domain}"


def event_url(event: Event) -> str | None:
    """Where to read or act: the action link, else the first link."""
    if event.action is not None:
        return event.action.url
    return event.links[0] if event.links else None


def _start(event: Event) -> datetime | date:
    if not isinstance(event.when, datetime):
        return event.when
    # aware since validation; shown in the event's zone (TZID)
    return event.when.astimezone(event.timezone)


def _description(event: Event, locale: str, default_locale: str) -> str:
    lines = [event.summary_for(locale, default_locale)] if event.summary else []
    if event.action is not None:
        text = localize(event.action.text, locale, default_locale)
        lines.append(f"{text}: {event.action.url}")
    lines.extend(event.links)
    return "\n\n".join(line for line in lines if line)


def vevent(
    event: Event,
    campaign: CampaignInfo,
    *,
    locale: str,
    now: datetime,
    sequence: int = 0,
    status: Status | None = None,
) -> VEvent:
    """The VEVENT for `event` with its texts in `locale`; `sequence` grows with changes;
    `status` overrides the event's (a notice for an event removed from the file)."""
    default = campaign.default_locale
    component = VEvent()
    component.add("uid", event_uid(event, campaign))
    component.add("dtstamp", now.astimezone(UTC).replace(microsecond=0))
    component.add("sequence", sequence)
    start = _start(event)
    component.add("dtstart", start)
    if not isinstance(start, datetime):
        component.add("dtend", start + timedelta(days=1))
    component.add("summary", event.title_for(locale, default))
    description = _description(event, locale, default)
    if description:
        component.add("description", description)
    url = event_url(event)
    if url:
        component.add("url", url)
    component.add("status", _STATUS[status or event.status])
    component.add("transp", "TRANSPARENT")  # a reminder, not time the reader is busy
    return component


def _calendar(campaign: CampaignInfo, components: list[VEvent]) -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", campaign.name)
    years = []
    for component in components:
        cal.add_component(component)
        start = component.decoded("dtstart")
        years.append(start.year)
    if years:
        # VTIMEZONE for every TZID used, so clients without a zone database agree;
        # a narrow span keeps the transition list (and the attachment) short
        cal.add_missing_timezones(date(min(years) - 1, 1, 1), date(max(years) + 2, 1, 1))
    return cal


def event_ics(
    event: Event,
    campaign: CampaignInfo,
    *,
    locale: str,
    now: datetime,
    sequence: int = 0,
    status: Status | None = None,
) -> bytes:
    """One event as a METHOD:PUBLISH calendar, for an email attachment."""
    component = vevent(event, campaign, locale=locale, now=now, sequence=sequence, status=status)
    return bytes(_calendar(campaign, [component]).to_ical())


def feed_ics(
    events: Iterable[Event],
    campaign: CampaignInfo,
    *,
    locale: str,
    now: datetime,
    sequences: Mapping[str, int] | None = None,
) -> bytes:
    """Several events as one calendar (the web's `/events.ics`); `sequences` maps
    event id to its SEQUENCE (default 0)."""
    seq = sequences or {}
    components = [
        vevent(event, campaign, locale=locale, now=now, sequence=seq.get(event.id, 0))
        for event in events
    ]
    return bytes(_calendar(campaign, components).to_ical())
