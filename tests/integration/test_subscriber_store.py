"""SubscriberStore and audience_clause on real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, literal, select, text

from campaignbot.campaign.model import Audience
from campaignbot.errors import InvalidInputError
from campaignbot.storage.database import Database
from campaignbot.storage.tables import UTCDateTime, alerts, deliveries, subscribers
from campaignbot.subscribers.model import SubscriberInput, SubscriberStatus
from campaignbot.subscribers.signups import Signup, SignupStore
from campaignbot.subscribers.store import SubscriberExistsError, SubscriberStore, audience_clause

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
ACTIVE, PENDING = SubscriberStatus.ACTIVE, SubscriberStatus.PENDING
UNSUBSCRIBED, BOUNCED = SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED


def entry(
    email: str,
    *,
    countries: tuple[str, ...] = (),
    topics: tuple[str, ...] = (),
    name: str = "",
    locale: str = "en",
) -> SubscriberInput:
    return SubscriberInput.create(
        email,
        name=name,
        locale=locale,
        timezone="Europe/Helsinki",
        countries=countries,
        topics=topics,
    )


@pytest.fixture
def store(db: Database) -> SubscriberStore:
    return SubscriberStore(db)


async def test_add_stores_an_active_subscriber_with_consent(store: SubscriberStore) -> None:
    added = await store.add(entry("Jan@Example.PL", countries=("PL",)), now=NOW, source="cli")
    assert added.id > 0
    assert (added.email, added.status, added.consent_at) == ("Jan@example.pl", ACTIVE, NOW)
    assert (added.countries, added.follows_all, added.consent_source) == ({"PL"}, False, "cli")
    assert await store.get(added.id) == added
    assert await store.get_by_email(" JAN@example.pl") == added
    assert await store.get_by_email("nobody@example.org") is None


async def test_add_refuses_a_known_address_whatever_its_case(store: SubscriberStore) -> None:
    await store.add(entry("jan@example.pl"), now=NOW, source="cli")
    with pytest.raises(SubscriberExistsError, match=r"JAN@example.pl: already a subscriber"):
        await store.add(entry("JAN@example.pl"), now=NOW, source="cli")


async def test_import_adds_then_leaves_identical_rows_alone(store: SubscriberStore) -> None:
    rows = [entry(f"p{i}@example.org", countries=("FI",)) for i in range(7)]
    first = await store.upsert_many(rows, now=NOW, source="import:a.csv", batch_size=3)
    assert (first.added, first.updated, first.unchanged) == (7, 0, 0)
    again = await store.upsert_many(rows, now=LATER, source="import:a.csv", batch_size=3)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 7)
    stored = await store.list_subscribers()
    assert {s.updated_at for s in stored} == {NOW}
    assert {(s.status, s.consent_at, s.consent_source) for s in stored} == {
        (ACTIVE, NOW, "import:a.csv")
    }


async def test_import_updates_changed_fields_but_not_status_or_consent(
    store: SubscriberStore,
) -> None:
    await store.add(entry("a@example.org"), now=NOW, source="cli", status=PENDING)
    counts = await store.upsert_many(
        [entry("A@example.org", name="Anna", topics=("elections",))], now=LATER, source="import:x"
    )
    assert (counts.added, counts.updated, counts.unchanged) == (0, 1, 0)
    after = await store.get_by_email("a@example.org")
    assert after is not None
    assert (after.email, after.name, after.topics, after.follows_all) == (
        "A@example.org",
        "Anna",
        {"elections"},
        False,
    )
    assert (after.status, after.consent_source, after.updated_at) == (PENDING, "cli", LATER)


@pytest.mark.parametrize("final", [UNSUBSCRIBED, BOUNCED])
async def test_import_never_touches_unsubscribed_or_bounced(
    store: SubscriberStore, final: SubscriberStatus
) -> None:
    added = await store.add(entry("gone@example.org"), now=NOW, source="cli")
    await store.set_status(added.id, final, now=NOW)
    counts = await store.upsert_many(
        [entry("GONE@example.org", name="Back?", countries=("FI",))], now=LATER, source="import:x"
    )
    assert (counts.added, counts.updated, counts.unchanged) == (0, 0, 1)
    after = await store.get(added.id)
    assert after is not None
    assert (after.status, after.email, after.name, after.updated_at) == (
        final,
        "gone@example.org",
        "",
        NOW,
    )


async def test_an_error_while_streaming_rolls_the_whole_import_back(
    store: SubscriberStore,
) -> None:
    def rows() -> Iterator[SubscriberInput]:
        for i in range(10):
            yield entry(f"p{i}@example.org")
        raise InvalidInputError("people.csv: row 12: invalid email")

    with pytest.raises(InvalidInputError):
        await store.upsert_many(rows(), now=NOW, source="import:x", batch_size=4)
    assert await store.list_subscribers() == []


async def test_a_repeated_address_in_one_stream_is_written_in_order(
    store: SubscriberStore,
) -> None:
    rows = [entry("a@example.org", name="first"), entry("A@example.org", name="second")]
    counts = await store.upsert_many(rows, now=NOW, source="import:x")
    assert (counts.added, counts.updated) == (1, 1)
    assert [s.name for s in await store.list_subscribers()] == ["second"]


async def test_iterate_filters_by_status_country_and_topic(store: SubscriberStore) -> None:
    await store.upsert_many(
        [
            entry("fi@example.org", countries=("FI",)),
            entry("fin@example.org", countries=("FI", "PL"), topics=("mine-ban-treaty",)),
            entry("mine@example.org", topics=("mine",)),
            entry("all@example.org"),
        ],
        now=NOW,
        source="import:x",
    )
    gone = await store.get_by_email("fi@example.org")
    assert gone is not None
    await store.set_status(gone.id, UNSUBSCRIBED, now=NOW)

    async def emails(**filters: object) -> list[str]:
        return [s.email async for s in store.iterate(**filters)]  # type: ignore[arg-type]

    assert await emails() == [
        "fi@example.org",
        "fin@example.org",
        "mine@example.org",
        "all@example.org",
    ]
    assert await emails(status=ACTIVE, country="fi") == ["fin@example.org"]
    assert await emails(topic="mine") == ["mine@example.org"]
    assert await emails(topic="mine-ban-treaty") == ["fin@example.org"]
    assert await emails(status=UNSUBSCRIBED) == ["fi@example.org"]


async def test_remove_deletes_the_subscriber_and_their_deliveries(
    db: Database, store: SubscriberStore
) -> None:
    added = await store.add(entry("jan@example.pl"), now=NOW, source="cli")
    async with db.engine.begin() as conn:
        alert_id = (
            await conn.execute(
                insert(alerts)
                .values(
                    key="ev:1d",
                    event_id="ev",
                    reminder="1d",
                    kind="alert",
                    due_at=NOW,
                    fired_at=NOW,
                    status="fired",
                )
                .returning(alerts.c.id)
            )
        ).scalar_one()
        await conn.execute(
            insert(deliveries).values(
                alert_id=alert_id,
                subscriber_id=added.id,
                status="pending",
                next_attempt_at=NOW,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    assert await store.remove("JAN@example.pl") is True
    assert await store.remove("jan@example.pl") is False
    async with db.engine.connect() as conn:
        left = (await conn.execute(select(func.count()).select_from(deliveries))).scalar_one()
    assert left == 0


async def test_set_status_and_update_preferences(store: SubscriberStore) -> None:
    added = await store.add(entry("jan@example.pl"), now=NOW, source="cli")
    bounced = await store.set_status(added.id, BOUNCED, now=LATER)
    assert bounced is not None
    assert (bounced.status, bounced.updated_at) == (BOUNCED, LATER)
    assert await store.set_status(999_999, BOUNCED, now=LATER) is None

    changed = await store.update_preferences(
        added.id, countries=["pl"], topics=[], locale="pl", timezone="Europe/Warsaw", now=LATER
    )
    assert changed is not None
    assert (changed.countries, changed.follows_all, changed.locale) == ({"PL"}, False, "pl")
    assert changed.status == BOUNCED  # preferences never change the status
    with pytest.raises(InvalidInputError, match="unknown locale 'xx'"):
        await store.update_preferences(
            added.id, countries=[], topics=[], locale="xx", timezone="UTC", now=LATER
        )


async def _one_due(signups: SignupStore, now: datetime) -> Signup:
    await signups.take_requests(now=now)
    due = await signups.due_mails(now=now)
    assert len(due) == 1
    return due[0]


async def test_sign_up_requests_become_pending_sign_ups_then_subscribers(
    store: SubscriberStore, db: Database
) -> None:
    signups = SignupStore(db)
    await signups.request(entry("a@example.org", name="A"), now=NOW, source="web")
    assert await store.get_by_email("a@example.org") is None  # nothing before confirmation
    signup = await _one_due(signups, NOW)
    assert await signups.claim_mail(signup, now=NOW)
    assert not await signups.claim_mail(signup, now=NOW)  # one drain sends it
    await signups.mail_sent(signup)
    assert await signups.due_mails(now=NOW) == []

    assert await signups.confirm(signup.id, "not-the-nonce", now=LATER) is None
    confirmed = await signups.confirm(signup.id, signup.nonce, now=LATER)
    assert confirmed is not None
    assert (confirmed.status, confirmed.consent_at, confirmed.name) == (ACTIVE, LATER, "A")
    assert confirmed.link_nonce
    assert await signups.confirm(signup.id, signup.nonce, now=LATER) is None  # used up


async def test_a_crashed_drains_mail_goes_out_after_the_lease(db: Database) -> None:
    signups = SignupStore(db)
    await signups.request(entry("a@example.org"), now=NOW, source="web")
    signup = await _one_due(signups, NOW)
    assert await signups.claim_mail(signup, now=NOW)  # ... and the process dies
    assert await signups.due_mails(now=NOW + timedelta(minutes=1)) == []
    assert await signups.due_mails(now=NOW + timedelta(minutes=6)) == [signup]


@pytest.mark.parametrize("status", [ACTIVE, BOUNCED])
async def test_a_sign_up_for_an_active_or_bounced_address_changes_nothing(
    store: SubscriberStore, db: Database, status: SubscriberStatus
) -> None:
    added = await store.add(entry("a@example.org"), now=NOW, source="cli")
    await store.set_status(added.id, status, now=NOW)
    before = await store.get(added.id)
    signups = SignupStore(db)
    await signups.request(entry("a@example.org", locale="fi"), now=LATER, source="web")
    assert await signups.take_requests(now=LATER) == 1
    assert await signups.due_mails(now=LATER) == []  # no mail
    assert await store.get(added.id) == before


async def test_someone_who_unsubscribed_may_sign_up_again_with_double_opt_in(
    store: SubscriberStore, db: Database
) -> None:
    added = await store.add(entry("a@example.org"), now=NOW, source="cli")
    left = await store.set_status(added.id, UNSUBSCRIBED, now=NOW)
    assert left is not None
    assert left.link_nonce != added.link_nonce  # old links stop working
    signups = SignupStore(db)
    await signups.request(entry("a@example.org", locale="fi"), now=LATER, source="web")
    signup = await _one_due(signups, LATER)
    assert await store.get(added.id) == left  # unchanged until the link is followed
    confirmed = await signups.confirm(signup.id, signup.nonce, now=LATER)
    assert confirmed is not None
    assert (confirmed.id, confirmed.status, confirmed.locale) == (added.id, ACTIVE, "fi")
    assert confirmed.link_nonce not in (added.link_nonce, left.link_nonce)


async def test_one_mail_per_address_per_day_and_purge_after_a_week(db: Database) -> None:
    signups = SignupStore(db)
    await signups.request(entry("a@example.org"), now=NOW, source="web")
    first = await _one_due(signups, NOW)
    await signups.claim_mail(first, now=NOW)
    await signups.mail_sent(first)
    for hours in (1, 23):
        await signups.request(entry("a@example.org"), now=NOW, source="web")
        await signups.take_requests(now=NOW + timedelta(hours=hours))
        assert await signups.due_mails(now=NOW + timedelta(hours=hours)) == []
    later = NOW + timedelta(hours=25)
    await signups.request(entry("a@example.org"), now=later, source="web")
    second = await _one_due(signups, later)
    assert second.nonce != first.nonce  # the first mail's link no longer works
    assert await signups.confirm(first.id, first.nonce, now=later) is None

    assert await signups.purge(now=later + timedelta(days=6)) == 0
    assert await signups.purge(now=later + timedelta(days=7, seconds=1)) == 1
    assert await signups.confirm(second.id, second.nonce, now=later) is None


@pytest.mark.parametrize("earlier_write", [False, True], ids=["alone", "after-another-revision"])
async def test_ids_are_never_reused_and_an_old_database_upgrades_keeping_deliveries(
    tmp_path: Path, earlier_write: bool
) -> None:
    from alembic import command

    from campaignbot.storage.database import alembic_config, open_database

    db = open_database(f"sqlite:///{tmp_path}/old.db")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0002"))
        await db.engine.dispose()
        async with db.engine.begin() as conn:
            for n in (1, 2):
                await conn.execute(
                    text(
                        "INSERT INTO subscribers (id, email, email_key, locale, timezone, status,"
                        " created_at, updated_at) VALUES (:n, :e, :e, 'en', 'UTC', 'active',"
                        " '2026-01-01', '2026-01-01')"
                    ),
                    {"n": n, "e": f"s{n}@example.org"},
                )
            await conn.execute(
                text(
                    "INSERT INTO alerts (id, key, event_id, reminder, kind, due_at, fired_at,"
                    " status) VALUES (1, 'e:1d', 'e', '1d', 'alert', '2026-01-01',"
                    " '2026-01-01', 'fired')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO deliveries (alert_id, subscriber_id, status, next_attempt_at,"
                    " created_at, updated_at) VALUES (1, 1, 'sent', '2026-01-01', '2026-01-01',"
                    " '2026-01-01'), (1, 2, 'pending', '2026-01-01', '2026-01-01', '2026-01-01')"
                )
            )
        if earlier_write:  # as an earlier revision in the same run leaves it: mid-transaction
            async with db.engine.begin() as conn:
                await conn.execute(text("UPDATE alembic_version SET version_num = '0002'"))
                await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head"))
        await db.upgrade()
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM deliveries"))).scalar() == 2
            assert (await conn.execute(text("PRAGMA foreign_key_check"))).all() == []
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        store = SubscriberStore(db)
        assert await store.remove("s2@example.org")
        again = await store.add(entry("s3@example.org"), now=NOW, source="cli")
        assert again.id == 3  # not 2: AUTOINCREMENT
        old = await store.get(1)
        assert old is not None
        assert old.link_nonce == ""  # links in mails already sent keep working
    finally:
        await db.dispose()


# who is in the table for the audience tests: email -> (countries, topics, status)
PEOPLE: dict[str, tuple[tuple[str, ...], tuple[str, ...], SubscriberStatus]] = {
    "fi": (("FI",), (), ACTIVE),
    "fi-pl": (("FI", "PL"), (), ACTIVE),
    "lt": (("LT",), ("cluster-munitions",), ACTIVE),
    "treaty": ((), ("mine-ban-treaty",), ACTIVE),
    "mine": ((), ("mine",), ACTIVE),
    "all": ((), (), ACTIVE),
    "fi-pending": (("FI",), (), PENDING),
    "all-unsubscribed": ((), (), UNSUBSCRIBED),
    "fi-bounced": (("FI",), ("mine-ban-treaty",), BOUNCED),
}


@pytest.mark.parametrize(
    ("audience", "expected"),
    [
        (Audience(), {"fi", "fi-pl", "lt", "treaty", "mine", "all"}),
        (Audience(countries=("FI",)), {"fi", "fi-pl", "all"}),
        (Audience(countries=("PL", "LT")), {"fi-pl", "lt", "all"}),
        (Audience(countries=("EE",)), {"all"}),
        (Audience(topics=("mine-ban-treaty",)), {"treaty", "all"}),
        (Audience(topics=("mine",)), {"mine", "all"}),
        (Audience(topics=("ban",)), {"all"}),
        (Audience(countries=("LT",), topics=("mine-ban-treaty",)), {"lt", "treaty", "all"}),
    ],
    ids=[
        "everyone",
        "country",
        "any-of-countries",
        "nobody-but-followers-of-all",
        "topic",
        "topic-that-prefixes-another",
        "substring-of-a-topic",
        "country-or-topic",
    ],
)
async def test_audience_clause_matches_active_followers_only(
    db: Database, store: SubscriberStore, audience: Audience, expected: set[str]
) -> None:
    for name, (countries, topics, status) in PEOPLE.items():
        added = await store.add(
            entry(f"{name}@example.org", countries=countries, topics=topics),
            now=NOW,
            source="test",
        )
        if status is not ACTIVE:
            await store.set_status(added.id, status, now=NOW)
    query = select(subscribers.c.email).where(audience_clause(audience))
    async with db.engine.connect() as conn:
        found = {row.email.split("@")[0] for row in await conn.execute(query)}
    assert found == expected
    assert await store.count_audience(audience) == len(expected)


async def test_audience_clause_drives_an_insert_from_select(
    db: Database, store: SubscriberStore
) -> None:
    """The delivery engine's shape: INSERT INTO deliveries ... SELECT ... WHERE clause."""
    for name in ("a", "b"):
        await store.add(entry(f"{name}@example.org", countries=("FI",)), now=NOW, source="t")
    await store.add(entry("c@example.org", countries=("PL",)), now=NOW, source="t")
    async with db.engine.begin() as conn:
        alert_id = (
            await conn.execute(
                insert(alerts)
                .values(
                    key="fi:0",
                    event_id="fi",
                    reminder="0",
                    kind="alert",
                    due_at=NOW,
                    fired_at=NOW,
                    status="fired",
                )
                .returning(alerts.c.id)
            )
        ).scalar_one()
        chosen = select(
            literal(alert_id, alerts.c.id.type),
            subscribers.c.id,
            literal("pending"),
            literal(NOW, UTCDateTime()),
            literal(NOW, UTCDateTime()),
            literal(NOW, UTCDateTime()),
        ).where(audience_clause(Audience(countries=("FI",))))
        columns = ["alert_id", "subscriber_id", "status", "next_attempt_at"]
        statement = insert(deliveries).from_select([*columns, "created_at", "updated_at"], chosen)
        await conn.execute(statement)
        query = select(subscribers.c.email).join(
            deliveries, deliveries.c.subscriber_id == subscribers.c.id
        )
        found = sorted(row.email for row in await conn.execute(query))
    assert found == ["a@example.org", "b@example.org"]
