"""What the service remembers about events: their versions, and which alerts fired."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from pydantic import ValidationError
from sqlalchemy import and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from campaignbot.campaign.model import Event, Status
from campaignbot.campaign.planning import event_start
from campaignbot.storage.database import Database
from campaignbot.storage.tables import alerts, event_versions

logger = logging.getLogger(__name__)

REMOVED = "removed"


def fingerprint(event: Event | None, send_at: time) -> str:
    """What a subscriber would need a notice about: the start they read, and the status.

    To the minute (emails show HH:MM: a correction of seconds that keeps the displayed
    time sends no notice). An all-day event shows only its date, so moving `send_at`
    sends none either.
    """
    if event is None:
        return REMOVED
    if not isinstance(event.when, datetime):
        return f"day:{event.when.isoformat()}|{event.status.value}"
    start = event_start(event, send_at).astimezone(UTC)
    return f"at:{start:%Y-%m-%dT%H:%MZ}|{event.status.value}"


def _legacy_fingerprint(event: Event | None, send_at: time) -> str | None:
    """The all-day fingerprint before it became the date alone (send_at in UTC)."""
    if event is None or isinstance(event.when, datetime):
        return None
    start = event_start(event, send_at).astimezone(UTC)
    return f"day:{start:%Y-%m-%dT%H:%MZ}|{event.status.value}"


def describe_change(old: str, new: str) -> str | None:
    """`rescheduled`, `postponed` or `cancelled` for a changed fingerprint, else None."""
    if old == new:
        return None
    if new == REMOVED or new.endswith("|" + Status.CANCELLED.value):
        return (
            None if old == REMOVED or old.endswith("|" + Status.CANCELLED.value) else ("cancelled")
        )
    if new.endswith("|" + Status.POSTPONED.value):
        return "postponed"
    return "rescheduled"


def previous_start(old: str) -> datetime | date | None:
    """The start an old fingerprint recorded, for "moved from ..." in notices."""
    if old == REMOVED:
        return None
    stamp = old.split("|", 1)[0].split(":", 1)[1]
    if "T" not in stamp:
        return date.fromisoformat(stamp)
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


def snapshot(event: Event) -> str:
    return event.model_dump_json()


def load_snapshot(text: str | None) -> Event | None:
    """The event a snapshot recorded; None if there is none or it no longer validates."""
    if text is None:
        return None
    try:
        return Event.model_validate_json(text)
    except ValidationError as err:
        logger.warning(
            "a stored event snapshot no longer validates: %s",
            str(err).splitlines()[0],
            extra={"action": "snapshot_invalid"},
        )
        return None


def _previous_when(old: Event | None, old_fingerprint: str) -> datetime | date | None:
    """When the event was planned before a change, as the organizer wrote it."""
    if old is None:
        return previous_start(old_fingerprint)
    return old.when  # aware since validation


@dataclass(frozen=True)
class EventChange:
    event_id: str
    change: str  # rescheduled | postponed | cancelled
    sequence: int  # the iCalendar SEQUENCE after the change
    previous: datetime | date | None  # the event's `when` before the change


class EventState:
    """Event versions and fired alert keys, in the database shared by all processes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def sequences(self) -> dict[str, int]:
        """The current iCalendar SEQUENCE of every known event."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(select(event_versions.c.event_id, event_versions.c.sequence))
            return {event_id: seq for event_id, seq in rows}

    async def record(
        self, events: Iterable[Event], *, send_at: time, now: datetime
    ) -> list[EventChange]:
        """Store each event's fingerprint and snapshot; return the changes since last time.

        A never-seen event is recorded without a change. An event that vanished from
        the config counts as cancelled and keeps its last snapshot. The update is
        conditional on the old fingerprint, so when several processes reload at once
        only one reports it.
        """
        current = {event.id: event for event in events}
        changes: list[EventChange] = []
        async with self._db.engine.begin() as conn:
            known = {row.event_id: row for row in await conn.execute(select(event_versions))}
            new_rows = [
                {
                    "event_id": event.id,
                    "fingerprint": fingerprint(event, send_at),
                    "sequence": 0,
                    "snapshot": snapshot(event),
                    "updated_at": now,
                }
                for event in current.values()
                if event.id not in known
            ]
            if new_rows:
                insert = pg_insert if self._db.is_postgres else sqlite_insert
                await conn.execute(
                    insert(event_versions).on_conflict_do_nothing(index_elements=["event_id"]),
                    new_rows,
                )
            for event_id, row in known.items():
                event = current.get(event_id)
                new = fingerprint(event, send_at)
                unchanged = and_(
                    event_versions.c.event_id == event_id,
                    event_versions.c.fingerprint == row.fingerprint,
                )
                if row.fingerprint == _legacy_fingerprint(event, send_at):
                    # recorded by an older version: the same event, in today's words
                    await conn.execute(
                        update(event_versions).where(unchanged).values(fingerprint=new)
                    )
                    continue
                if new == row.fingerprint:
                    # same date and status; titles or links may still have been edited
                    if event is not None and row.snapshot != (text := snapshot(event)):
                        await conn.execute(
                            update(event_versions).where(unchanged).values(snapshot=text)
                        )
                    continue
                values = {"fingerprint": new, "sequence": row.sequence + 1, "updated_at": now}
                if event is not None:
                    values["snapshot"] = snapshot(event)
                result = await conn.execute(update(event_versions).where(unchanged).values(values))
                if result.rowcount != 1:
                    continue  # another process recorded this change
                change = describe_change(row.fingerprint, new)
                if change is not None:
                    previous = _previous_when(load_snapshot(row.snapshot), row.fingerprint)
                    changes.append(EventChange(event_id, change, row.sequence + 1, previous))
        return changes

    async def snapshots(self, event_ids: Iterable[str]) -> dict[str, Event]:
        """The last known definition of these events (also of ones deleted from the file)."""
        query = select(event_versions.c.event_id, event_versions.c.snapshot).where(
            event_versions.c.event_id.in_(set(event_ids))
        )
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {
            event_id: event for event_id, text in rows if (event := load_snapshot(text)) is not None
        }

    async def recorded(self) -> dict[str, Event]:
        """The schedule as last recorded: every event still in it (not removed)."""
        query = select(event_versions.c.event_id, event_versions.c.snapshot).where(
            event_versions.c.fingerprint != REMOVED
        )
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {
            event_id: event for event_id, text in rows if (event := load_snapshot(text)) is not None
        }

    async def fired_keys(self, keys: Iterable[str]) -> set[str]:
        """Which of these alert keys are already in the ledger (fired or skipped)."""
        wanted = list(keys)
        found: set[str] = set()
        async with self._db.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = await conn.execute(select(alerts.c.key).where(alerts.c.key.in_(chunk)))
                found.update(key for (key,) in rows)
        return found
