"""CSV from other tools and locales, choices checked, and suppression that sticks."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import campaignbot.cli  # noqa: F401  (registers every command)
from campaignbot.cli.common import cli
from campaignbot.subscribers.model import Subscriber, SubscriberStatus
from tests.test_cli_subscribers import SHIPPED, stored


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    """The shipped campaign: countries EE, FI, LT, LV, PL; topics incl. mine-ban-treaty."""
    monkeypatch.setenv("CAMPAIGNBOT_CONFIG", str(SHIPPED))
    monkeypatch.setenv("CAMPAIGNBOT_DATABASE_URL", database_url)
    return database_url


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def write_bytes(name: str, text: str, *, bom: bool = False) -> Path:
    path = Path(name)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def by_email(url: str) -> dict[str, Subscriber]:
    return {s.email: s for s in stored(url)}


@pytest.mark.parametrize(
    ("delimiter", "bom"),
    [(";", False), (";", True), ("\t", False), (",", True)],
    ids=["semicolon", "semicolon-bom", "tab", "comma-bom"],
)
def test_import_sniffs_the_delimiter_and_strips_a_bom(env: str, delimiter: str, bom: bool) -> None:
    d = delimiter
    rows = [
        d.join(["email", "name", "locale", "timezone", "countries", "topics"]),
        d.join(["jan@example.pl", "Jan", "pl", "Europe/Warsaw", "PL", "mine-ban-treaty"]),
        d.join(["anna@example.fi", "Anna", "fi", "", '"FI;EE"' if d == ";" else "FI;EE", ""]),
    ]
    path = write_bytes("excel.csv", "\n".join(rows) + "\n", bom=bom)
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "2 added" in result.output
    found = by_email(env)
    anna = found["anna@example.fi"]
    assert anna.countries == {"FI", "EE"}


def test_import_reads_a_mailchimp_export(env: str) -> None:
    text = (
        "Email Address,First Name,Last Name,Address,Phone Number,MEMBER_RATING,OPTIN_TIME,"
        "CC,TIMEZONE,TAGS\n"
        'ada@example.fi,Ada,Lovelace,,,2,2024-01-01 10:00:00,FI,Europe/Helsinki,"a,b"\n'
    )
    result = run("subscribers", "import", str(write_bytes("mailchimp.csv", text)))
    assert result.exit_code == 0, result.output
    ada = by_email(env)["ada@example.fi"]
    assert (ada.name, ada.countries, ada.timezone) == (
        "Ada Lovelace",
        {"FI"},
        "Europe/Helsinki",
    )


def test_import_reads_a_listmonk_export_and_suppresses_its_blocklist(env: str) -> None:
    text = (
        "uuid,email,name,attributes,status,created_at,updated_at\n"
        'u1,ok@example.org,Ok,"{""city"": ""Turku""}",enabled,2024-01-01,2024-01-02\n'
        "u2,blocked@example.org,No,{},blocklisted,2024-01-01,2024-01-02\n"
    )
    result = run("subscribers", "import", str(write_bytes("listmonk.csv", text)))
    assert result.exit_code == 0, result.output
    assert "1 added" in result.output and "1 suppressed" in result.output
    found = by_email(env)
    assert found["ok@example.org"].status is SubscriberStatus.ACTIVE
    blocked = found["blocked@example.org"]
    assert blocked.status is SubscriberStatus.SUPPRESSED


def test_import_map_renames_and_ignores_columns(env: str) -> None:
    text = "E-post;Namn;Telefon\nsara@example.org;Sara;+358 40 123\n"
    path = write_bytes("swedish.csv", text)
    refused = run("subscribers", "import", str(path))
    assert refused.exit_code == 2
    assert "unknown column 'E-post'" in refused.output and "--map" in refused.output
    result = run(
        "subscribers", "import", str(path), "--map", "E-post=email", "--map", "Namn=name",
        "--map", "Telefon=",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert by_email(env)["sara@example.org"].name == "Sara"


def test_import_rejects_unknown_topics_and_countries_with_the_row(env: str) -> None:
    text = (
        "email,countries,topics\n"
        "a@example.org,FI,mine-ban-treaty\n"
        "b@example.org,,nonexistent-topic\n"
        "c@example.org,ZZ,\n"
    )
    path = write_bytes("people.csv", text)
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert "people.csv: row 3: unknown topic 'nonexistent-topic'" in result.output
    assert "people.csv: row 4: unknown country 'ZZ'" in result.output
    assert stored(env) == []
    allowed = run("subscribers", "import", str(path), "--allow-unknown")
    assert allowed.exit_code == 0, allowed.output
    assert len(stored(env)) == 3


def test_add_rejects_a_misspelt_topic_unless_allowed(env: str) -> None:
    result = run("subscribers", "add", "x@example.org", "--topic", "mine-ban-traety")
    assert result.exit_code == 2
    assert "unknown topic 'mine-ban-traety'" in result.output
    country = run("subscribers", "add", "x@example.org", "--country", "ZZ")
    assert country.exit_code == 2 and "unknown country 'ZZ'" in country.output
    ok = run("subscribers", "add", "x@example.org", "--country", "ZZ", "--allow-unknown")
    assert ok.exit_code == 0, ok.output


def test_suppress_keeps_the_record_and_import_cannot_re_add_it(env: str) -> None:
    assert run("subscribers", "add", "ada@example.org").exit_code == 0
    result = run("subscribers", "suppress", "ada@example.org", "--reason", "asked by phone")
    assert result.exit_code == 0, result.output
    path = write_bytes("again.csv", "email,name\nada@example.org,Ada\n")
    assert run("subscribers", "import", str(path)).exit_code == 0
    [ada] = stored(env)
    assert (ada.status, ada.name) == (SubscriberStatus.SUPPRESSED, "")
    listed = run("subscribers", "list", "--status", "suppressed")
    assert "ada@example.org" in listed.output
    back = run("subscribers", "unsuppress", "ada@example.org")
    assert back.exit_code == 0 and "active" in back.output  # she had given consent
    assert run("subscribers", "unsuppress", "ada@example.org").exit_code == 2


def test_suppressing_an_unknown_address_blocks_it_for_good(env: str) -> None:
    result = run("subscribers", "suppress", "Stranger@Example.org", "--reason", "complaint")
    assert result.exit_code == 0, result.output
    path = write_bytes("list.csv", "email\nstranger@example.org\n")
    assert run("subscribers", "import", str(path)).exit_code == 0
    [stranger] = stored(env)
    assert stranger.status is SubscriberStatus.SUPPRESSED
    back = run("subscribers", "unsuppress", "stranger@example.org")
    assert "unsubscribed" in back.output  # no consent on record: not mailed


def test_suppress_needs_a_reason(env: str) -> None:
    assert run("subscribers", "suppress", "a@example.org").exit_code == 2


def test_remove_says_it_erases(env: str) -> None:
    assert run("subscribers", "add", "ada@example.org").exit_code == 0
    result = run("subscribers", "remove", "ada@example.org")
    assert result.exit_code == 0
    assert "erased" in result.output and "suppress" in result.output


def test_export_is_spreadsheet_safe_and_imports_back_unchanged(env: str) -> None:
    formula = '=HYPERLINK("http://evil.example","click")'
    assert run("subscribers", "add", "eve@example.org", "--name", formula).exit_code == 0
    import csv
    import io

    safe = run("subscribers", "export")
    assert safe.exit_code == 0, safe.output
    assert list(csv.reader(io.StringIO(safe.output)))[1][1] == "'" + formula
    raw = run("subscribers", "export", "--raw")
    assert list(csv.reader(io.StringIO(raw.output)))[1][1] == formula
    assert run("subscribers", "remove", "eve@example.org").exit_code == 0
    path = write_bytes("back.csv", safe.output)
    assert run("subscribers", "import", str(path)).exit_code == 0
    [eve] = stored(env)
    assert eve.name == formula
