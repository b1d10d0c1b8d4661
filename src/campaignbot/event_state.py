"""What the service remembers about events: their versions, and which alerts fired."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from campaignbot.campaign import Event, Status
from campaignbot.database import Database
from campaignbot.planning import event_start
from campaignbot.tables import alerts, event_versions

REMOVED = "removed"


def fingerprint(event: Event | None, send_at: time) -> str:
    """What a subscriber would need a notice about: the event's instant and status."""
    if event is None:
        return REMOVED
    start = event_start(event, send_at).astimezone(UTC)
    kind = "day" if event.all_day else "at"
    return f"{kind}:{start:%Y-%m-%dT%H:%MZ}|{event.status.value}"


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


def previous_start(old: str) -> datetime | None:
    """The instant an old fingerprint recorded, for "moved from ..." in notices."""
    if old == REMOVED:
        return None
    stamp = old.split("|", 1)[0].split(":", 1)[1]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class EventChange:
    event_id: str
    change: str  # rescheduled | postponed | cancelled
    sequence: int  # the iCalendar SEQUENCE after the change
    previous: datetime | None


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
        """Store each event's fingerprint; return the changes since last time.

        A never-seen event is recorded without a change. An event that vanished from
        the config counts as cancelled. The update is conditional on the old
        fingerprint, so when several processes reload at once only one reports it.
        """
        current = {event.id: fingerprint(event, send_at) for event in events}
        changes: list[EventChange] = []
        async with self._db.engine.begin() as conn:
            known = {row.event_id: row for row in await conn.execute(select(event_versions))}
            new_rows = [
                {"event_id": eid, "fingerprint": fp, "sequence": 0, "updated_at": now}
                for eid, fp in current.items()
                if eid not in known
            ]
            if new_rows:
                insert = pg_insert if self._db.is_postgres else sqlite_insert
                await conn.execute(
                    insert(event_versions).on_conflict_do_nothing(index_elements=["event_id"]),
                    new_rows,
                )
            for event_id, row in known.items():
                new = current.get(event_id, REMOVED)
                if new == row.fingerprint:
                    continue
                result = await conn.execute(
                    update(event_versions)
                    .where(
                        event_versions.c.event_id == event_id,
                        event_versions.c.fingerprint == row.fingerprint,
                    )
                    .values(fingerprint=new, sequence=row.sequence + 1, updated_at=now)
                )
                if result.rowcount != 1:
                    continue  # another process recorded this change
                change = describe_change(row.fingerprint, new)
                if change is not None:
                    changes.append(
                        EventChange(
                            event_id, change, row.sequence + 1, previous_start(row.fingerprint)
                        )
                    )
        return changes

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
