"""iCalendar (RFC 5545/5546) for campaign events: one event for emails, a feed for the web.

An attachment is METHOD:PUBLISH (CANCEL for a cancellation, same UID and a higher
SEQUENCE) with the ORGANIZER RFC 5546 requires for both; it carries no
X-WR-CALNAME, which makes some clients open it as a new calendar. The feed is a
named calendar.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta

from icalendar import Calendar, vCalAddress, vText
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


def _end(event: Event, start: datetime | date) -> datetime | date:
    """A real end (RFC 5546 clients show zero-length events badly): the event's
    `duration`, else an hour; all-day events end on the day after their last day."""
    if not isinstance(start, datetime):
        return start + timedelta(days=max(1, event.length.days))
    return start + event.length


def organizer(campaign: CampaignInfo, locale: str) -> vCalAddress:
    """`ORGANIZER;CN=<campaign name>:mailto:<sender>` (RFC 5546 §3.2.1 requires it)."""
    address = vCalAddress(f"mailto:{campaign.sender_address.addr_spec}")
    address.params["cn"] = vText(campaign.name_for(locale))
    return address


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
    component.add("dtend", _end(event, start))
    component.add("organizer", organizer(campaign, locale))
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


def _calendar(components: list[VEvent], *, method: str, name: str | None) -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    if name is not None:
        cal.add("x-wr-calname", name)
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
    """One event as a calendar for an email attachment: METHOD:PUBLISH, or
    METHOD:CANCEL when the event is cancelled (the caller passes a higher SEQUENCE)."""
    component = vevent(event, campaign, locale=locale, now=now, sequence=sequence, status=status)
    method = attachment_method(status or event.status)
    return bytes(_calendar([component], method=method, name=None).to_ical())


def attachment_method(status: Status) -> str:
    """The iTIP method of an attachment for an event in `status`."""
    return "CANCEL" if status is Status.CANCELLED else "PUBLISH"


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
    name = campaign.name_for(locale)
    return bytes(_calendar(components, method="PUBLISH", name=name).to_ical())
