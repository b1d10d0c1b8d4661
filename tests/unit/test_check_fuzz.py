"""No internal error is reachable from a campaign file or a template (Hypothesis).

Every outcome of loading a campaign file and checking the templates is either valid
or a list of one-line problems (the CLI's exit 0 or exit 2); never another exception
(the CLI's exit 1, "internal error").
"""

from __future__ import annotations

import os
import shutil
import tomllib
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import campaignbot.cli  # noqa: F401  (registers every command)
from campaignbot.campaign.model import load_campaign, parse_campaign
from campaignbot.cli.common import cli
from campaignbot.email.template_check import check_templates
from campaignbot.errors import ConfigError, InvalidInputError
from campaignbot.settings import Settings

REPO = Path(__file__).resolve().parents[2]

VALID = """\
[campaign]
name = "Stay"
sender = "Alerts <alerts@example.org>"
timezone = "Europe/Helsinki"
send_at = "09:00"
reminders = ["1d", "0"]

[[events]]
id = "vote"
title = { en = "Vote", fi = "Äänestys" }
when = 2030-06-17T10:00:00
reminders = ["2h", "0"]
audience = { countries = ["FI"] }
action = { text = "Act", url = "https://example.org/act" }
"""

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "80")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["0", "1d", "7x", "Europe/Helsinki", "Mars/Base", "en", "09:00", "25:61"]),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.just(UTC)),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = {
    "campaign": [
        "name",
        "sender",
        "default_locale",
        "timezone",
        "send_at",
        "reminders",
        "catch_up",
        "stale_after",
        "topics",
        "unknown",
    ],
    "event": [
        "id",
        "title",
        "when",
        "timezone",
        "summary",
        "audience",
        "action",
        "links",
        "reminders",
        "status",
        "unknown",
    ],
}


def _assert_one_line_problems(err: InvalidInputError) -> None:
    assert err.problems, err
    for problem in err.problems:
        assert "\n" not in str(problem) and "\r" not in str(problem), repr(str(problem))


@FUZZ
@given(
    campaign_edits=st.dictionaries(st.sampled_from(KEYS["campaign"]), values, max_size=3),
    event_edits=st.dictionaries(st.sampled_from(KEYS["event"]), values, max_size=3),
    campaign_top=st.one_of(st.none(), scalars, values),
    events_top=st.one_of(st.none(), values),
)
@example(campaign_edits={}, event_edits={}, campaign_top="x", events_top=None)
def test_any_decoded_campaign_is_valid_or_one_line_problems(
    campaign_edits: dict[str, Any],
    event_edits: dict[str, Any],
    campaign_top: Any,
    events_top: Any,
) -> None:
    data: dict[str, Any] = tomllib.loads(VALID)
    data["campaign"].update(campaign_edits)
    data["events"][0].update(event_edits)
    if campaign_top is not None:
        data["campaign"] = campaign_top
    if events_top is not None:
        data["events"] = events_top
    try:
        parse_campaign(data, source="campaign.toml")
    except ConfigError as err:
        _assert_one_line_problems(err)


@FUZZ
@given(
    position=st.integers(0, len(VALID)),
    cut=st.integers(0, 40),
    insert=st.text(alphabet=st.sampled_from("[]{}=\"'.,:-#\n 0123456789TZabz+"), max_size=12),
)
def test_any_edited_campaign_file_is_valid_or_one_line_problems(
    tmp_path: Path, position: int, cut: int, insert: str
) -> None:
    path = tmp_path / "campaign.toml"
    path.write_text(VALID[:position] + insert + VALID[position + cut :], encoding="utf-8")
    try:
        load_campaign(path)
    except ConfigError as err:
        _assert_one_line_problems(err)


TOKENS = [
    *"{}%#()[]|.,:'\"=+-*/~ \nabcdefiorstxn0123",
    *["{{", "}}", "{%", "%}", "{#", "#}", "if ", "endif", "for ", "in ", "endfor"],
    *["event.", "reminder.", "title", "phrase", "|upper", "|nope", "set ", "block "],
    *["extends ", "include ", "macro ", "endmacro", "call", "raw", "endraw", "loop."],
    *["none", "1/0", "range(", "self", "super()", "import "],
]
JINJA = st.lists(st.sampled_from(TOKENS), max_size=20).map("".join)


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "templates"
    shutil.copytree(REPO / "templates", folder)
    return folder


@FUZZ
@given(
    name=st.sampled_from(
        [
            "alert/en.txt.j2",
            "alert/en.subject.j2",
            "alert/fi.html.j2",
            "notice/en.txt.j2",
            "confirm/en.subject.j2",
            "base.txt.j2",
            "base.html.j2",
        ]
    ),
    snippet=JINJA,
    where=st.floats(0, 1),
)
def test_any_edited_template_is_fine_or_one_line_problems(
    fuzz_folder: Path, tmp_path: Path, name: str, snippet: str, where: float
) -> None:
    path = fuzz_folder / name
    original = (REPO / "templates" / name).read_text(encoding="utf-8")
    at = int(len(original) * where)
    path.write_text(original[:at] + snippet + original[at:], encoding="utf-8")
    try:
        campaign = parse_campaign(tomllib.loads(VALID), source="campaign.toml")
        settings_ = Settings(
            templates=fuzz_folder,
            secret_key="fuzz-secret",  # type: ignore[arg-type]
            var_dir=tmp_path / "var",
        )
        problems = check_templates(settings_, campaign)
        for problem in problems:
            assert "\n" not in str(problem), repr(str(problem))
    finally:
        path.write_text(original, encoding="utf-8")


def test_check_with_a_template_syntax_error_is_file_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "templates"
    shutil.copytree(REPO / "templates", folder)
    broken = folder / "layout" / "alert.txt.j2"  # the per-locale files only extend it
    lines = broken.read_text(encoding="utf-8").splitlines()
    lines[2] += " {% if %}"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = tmp_path / "campaign.toml"
    config.write_text(VALID, encoding="utf-8")
    monkeypatch.setenv("CAMPAIGNBOT_CONFIG", str(config))
    monkeypatch.setenv("CAMPAIGNBOT_TEMPLATES", str(folder))
    monkeypatch.setenv("CAMPAIGNBOT_DATABASE_URL", f"sqlite:///{tmp_path}/db.sqlite")
    monkeypatch.setenv("CAMPAIGNBOT_SECRET_KEY", "test-secret-0123456789abcdef0123456789")
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 2, result.output
    assert f"{broken}:3: " in result.output, result.output
    assert "internal error" not in result.output
