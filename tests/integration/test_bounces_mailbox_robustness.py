"""A mailbox of 1,000 mixed messages survives a restart mid-batch: none lost, none twice.

Hard and soft DSNs, ARF complaints, auto-replies, malformed MIME and random bytes are
delivered into a Maildir. The first reader "crashes" right after recording message 437
and before moving it out of new/ (the worst moment); a fresh reader on a fresh engine
then finishes. Every message must be recorded exactly once, every bounce counted once.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from campaignbot.delivery.bounces.mailbox import MailboxMessage, MaildirMailbox
from campaignbot.delivery.bounces.reader import read_bounces_once
from campaignbot.delivery.bounces.verp import derive_key, return_path
from campaignbot.delivery.ledger import Ledger
from campaignbot.settings import BounceSettings, Settings
from campaignbot.storage.database import open_database
from campaignbot.storage.tables import bounce_reports, deliveries, subscribers
from tests.bounce_samples import dsn, sample
from tests.clock import FakeClock
from tests.integration.test_bounces import deliver
from tests.integration.test_ledger import EVERYONE, Alert, insert_subscribers

T0 = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
SECRET = "k" * 40
BOUNCES = "bounces@example.org"
CRASH_AFTER = 437


class Crash(Exception):
    """The process dies here."""


class CrashingMaildir(MaildirMailbox):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.marked = 0

    async def mark_done(self, message: MailboxMessage) -> None:
        if self.marked == CRASH_AFTER:
            raise Crash  # recorded, not yet moved out of new/
        self.marked += 1
        await super().mark_done(message)


def _messages(delivery_ids: list[int]) -> list[bytes]:
    key = derive_key(SECRET)
    rand = random.Random(17)
    out = []
    bounce_like = iter(delivery_ids)  # each DSN or complaint names a different delivery
    for i in range(1000):
        kind = i % 5
        d = next(bounce_like) if kind < 3 else 0
        to = return_path(BOUNCES, key, d)
        if kind == 0:
            out.append(dsn(to, [(f"s{d}@example.org", "failed", "5.1.1", "smtp; 550 5.1.1 no")]))
        elif kind == 1:
            out.append(dsn(to, [(f"s{d}@example.org", "failed", "4.4.7", "smtp; 451 later")]))
        elif kind == 2:
            out.append(sample("arf-abuse.eml", **{"bounces+TAG@example.org": to, "MSGID": "<x>"}))
        elif kind == 3:
            out.append(sample("vacation.eml") if i % 2 else sample("malformed.eml"))
        else:
            out.append(
                rand.choice(
                    [
                        rand.randbytes(rand.randint(0, 3000)),
                        b"",
                        b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\n--x",
                        b"Subject: " + b"A" * 20000 + b"\r\n\r\nbody",
                    ]
                )
            )
    return out


async def test_a_thousand_messages_across_a_restart(database_url: str, tmp_path: Path) -> None:
    maildir = tmp_path / "bounces"
    settings = Settings(
        secret_key=SECRET,
        bounce_address=BOUNCES,
        bounces=BounceSettings(maildir=maildir, hard_limit=3, soft_limit=5),
    )
    db = open_database(database_url)
    try:
        await insert_subscribers(db, 200)
        ledger = Ledger(db, owner="t")
        for reminder in ("7d", "3d", "1d"):
            await ledger.fire_alert(Alert("vote", reminder), EVERYONE, now=T0)
        async with db.engine.begin() as conn:
            await conn.execute(update(deliveries).values(status="sent", sent_at=T0))
            ids = sorted((await conn.execute(select(deliveries.c.id))).scalars())
        # 600 deliveries, 600 bounce-like messages: every subscriber gets one hard
        # bounce, one soft bounce and one complaint
        for data in _messages(ids):
            deliver(maildir, data)

        first = CrashingMaildir(maildir)
        with pytest.raises(Crash):
            await read_bounces_once(db, settings, clock=FakeClock(T0), mailbox=first)
    finally:
        await db.dispose()

    db = open_database(database_url)  # the restarted process
    try:
        summary = await read_bounces_once(db, settings, clock=FakeClock(T0))
        assert summary.messages == 1000 - CRASH_AFTER
        assert summary.actions["duplicate"] >= 1  # the one recorded just before the crash
        assert list((maildir / "new").iterdir()) == []
        assert len(list((maildir / "cur").iterdir())) == 1000
        async with db.engine.connect() as conn:
            keys = list((await conn.execute(select(bounce_reports.c.key))).scalars())
            by_status = Counter(
                dict(
                    (
                        await conn.execute(
                            select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
                        )
                    ).all()
                )
            )
            hard_total = (await conn.execute(select(func.sum(subscribers.c.hard_bounces)))).scalar()
        messages = {k.partition("#")[0] for k in keys}
        assert len(messages) == 1000  # every message recorded ...
        assert len(keys) == len(set(keys))  # ... and nothing twice
        assert hard_total == 200  # each hard DSN counted once
        assert by_status["complained"] == 200
        assert by_status["bounced"] == 400
        # nothing new the next minute
        assert (await read_bounces_once(db, settings, clock=FakeClock(T0))).messages == 0
    finally:
        await db.dispose()
