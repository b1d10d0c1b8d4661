"""What templates see: the subscriber, the event, the reminder and the campaign,
as plain values in the reader's language and zone; and the event's lead time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from campaignbot.campaign.model import Event


@dataclass(frozen=True)
class Recipient:
    """The subscriber fields rendering needs."""

    id: int
    email: str
    name: str
    locale: str
    timezone: str
    #: the row's link nonce, signed into every link (see tokens.py)
    nonce: str = ""


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
    #: the event's own wall time ("10:00") and its zone's name ("Central European
    #: Time") when the reader's zone shows another time; "" otherwise and all-day
    venue_time: str = ""
    venue_zone: str = ""


@dataclass(frozen=True)
class ReminderView:
    """`reminder` in templates: the offset label and a phrase like "tomorrow"."""

    label: str
    phrase: str


@dataclass(frozen=True)
class CampaignView:
    """`campaign` in templates, in the subscriber's locale."""

    name: str
    sender: str
    sender_name: str
    sender_email: str
    default_locale: str
    url: str
    #: the organisation's name and postal address for the footer ("" when unset)
    organization: str = ""
    privacy_url: str = ""
    #: the public calendar feed, to download (https) and to subscribe to (webcal)
    feed_url: str = ""
    webcal_url: str = ""


MINUTE = timedelta(minutes=1)


def time_to(event: Event, now: datetime) -> tuple[int, timedelta]:
    """Calendar days (in the event's zone) and exact time from `now` to the event."""
    tz = event.timezone
    today = aware(now).astimezone(tz).date()
    if isinstance(event.when, datetime):
        start = event.when  # aware since validation
        return (start.astimezone(tz).date() - today).days, start - aware(now)
    midnight = datetime.combine(event.when, datetime.min.time(), tz)
    return (event.when - today).days, midnight - aware(now)


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
