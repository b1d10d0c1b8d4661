"""Subscriber validation, normalisation and CSV rows (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaignbot.errors import InvalidInputError
from campaignbot.subscribers.model import (
    CSV_COLUMNS,
    CsvImport,
    SubscriberInput,
    csv_row,
    decode_list,
    email_key,
    encode_list,
    normalize_countries,
    normalize_topics,
    parse_header,
    parse_row,
)

HEADER = list(CSV_COLUMNS)
COLUMNS = {name: i for i, name in enumerate(CSV_COLUMNS)}


def make(email: str = "jan@example.pl", **kwargs: object) -> SubscriberInput:
    fields: dict[str, object] = {"locale": "en", "timezone": "Europe/Helsinki", **kwargs}
    return SubscriberInput.create(email, **fields)  # type: ignore[arg-type]


def test_it_normalises_every_field() -> None:
    entry = make(
        "  Jan.Kowalski@EXAMPLE.PL ",
        name="  Jan \t Kowalski ",
        locale="pt-br",
        timezone="Europe/Warsaw",
        countries=["pl; fi", "ee"],
        topics=["Mine-Ban-Treaty"],
    )
    assert entry.email == "Jan.Kowalski@example.pl"
    assert entry.email_key == "jan.kowalski@example.pl"
    assert entry.name == "Jan Kowalski"
    assert entry.locale == "pt_BR"
    assert entry.countries == {"PL", "FI", "EE"}
    assert entry.topics == {"mine-ban-treaty"}
    assert entry.follows_all is False


@pytest.mark.parametrize(
    ("countries", "topics", "follows_all"),
    [((), (), True), (("FI",), (), False), ((), ("elections",), False), (("",), (" ; ",), True)],
    ids=["nothing-chosen", "a-country", "a-topic", "blank-lists"],
)
def test_it_follows_everything_only_when_nothing_is_chosen(
    countries: tuple[str, ...], topics: tuple[str, ...], follows_all: bool
) -> None:
    assert make(countries=countries, topics=topics).follows_all is follows_all


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"email": "jan@@example.pl"}, "invalid email 'jan@@example.pl'"),
        ({"email": "no-at-sign"}, "invalid email 'no-at-sign'"),
        ({"email": ""}, "invalid email ''"),
        ({"locale": "xx"}, "unknown locale 'xx'"),
        ({"timezone": "Europe/Helsenki"}, "unknown time zone 'Europe/Helsenki'"),
        ({"timezone": "../../etc/passwd"}, "unknown time zone"),
        ({"countries": ["FIN"]}, "two-letter ISO code like 'FI', got 'FIN'"),
        ({"countries": ["F1"]}, "got 'F1'"),
        ({"topics": ["mine ban"]}, "lowercase slug like 'mine-ban-treaty', got 'mine ban'"),
        ({"name": "x" * 201}, "longer than 200"),
        ({"name": "a\x00b"}, "control character"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_it_rejects_bad_fields_with_a_one_line_reason(
    fields: dict[str, object], message: str
) -> None:
    email = str(fields.pop("email", "jan@example.pl"))
    with pytest.raises(ValueError) as info:
        make(email, **fields)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_email_key_is_case_insensitive_even_for_invalid_input() -> None:
    assert email_key(" Jan@Example.PL ") == "jan@example.pl"
    assert email_key("Not An Address") == "not an address"


_code = st.from_regex(r"[A-Za-z]{2}", fullmatch=True)
_slug = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)


@given(codes=st.lists(_code, max_size=8), spaces=st.lists(st.sampled_from(["", " ", "\t"])))
def test_country_cells_parse_whatever_the_spacing_and_case(
    codes: list[str], spaces: list[str]
) -> None:
    pad = "".join(spaces)
    cell = ";".join(f"{pad}{code}{pad}" for code in codes) + (";" if codes else "")
    assert normalize_countries([cell]) == {c.upper() for c in codes}


@given(topics=st.sets(_slug, max_size=10))
def test_stored_lists_round_trip_and_match_only_whole_items(topics: set[str]) -> None:
    stored = encode_list(topics)
    assert decode_list(stored) == topics
    assert normalize_topics([";".join(topics)]) == topics
    for topic in topics:
        assert f";{topic};" in stored
    # a prefix of an item is not an item: `LIKE '%;mine;%'` must not hit "mine-ban-treaty"
    for topic in topics:
        if topic[:-1] and topic[:-1] not in topics:
            assert f";{topic[:-1]};" not in stored


def test_empty_list_is_stored_as_an_empty_string() -> None:
    assert encode_list([]) == ""
    assert encode_list(["PL", "FI"]) == ";FI;PL;"


@given(
    countries=st.sets(st.from_regex(r"[A-Z]{2}", fullmatch=True), max_size=4),
    topics=st.sets(_slug, max_size=4),
    name=st.text(st.characters(max_codepoint=0x2FF, exclude_categories=("Cc", "Cs")), max_size=30),
)
def test_csv_row_round_trips_through_parse_row(
    countries: set[str], topics: set[str], name: str
) -> None:
    entry = make("anna@example.fi", name=name, locale="fi", countries=countries, topics=topics)
    again = parse_row(csv_row(entry), COLUMNS, default_locale="en", default_timezone="UTC")
    assert again == entry


def test_empty_locale_and_zone_take_the_campaign_defaults() -> None:
    entry = parse_row(
        ["a@example.org", "", "", "", "", ""],
        COLUMNS,
        default_locale="fi",
        default_timezone="Europe/Helsinki",
    )
    assert (entry.locale, entry.timezone, entry.follows_all) == ("fi", "Europe/Helsinki", True)


def test_header_may_be_reordered_or_partial_but_needs_email() -> None:
    assert parse_header(["\ufeffEmail", " topics "]) == {"email": 0, "topics": 1}
    with pytest.raises(ValueError, match="missing column 'email'"):
        parse_header(["name", "locale"])
    with pytest.raises(ValueError, match="unknown column 'phone'"):
        parse_header(["email", "phone"])
    with pytest.raises(ValueError, match="appears twice"):
        parse_header(["email", "email"])


def _import(records: list[list[str]], *, skip_invalid: bool = False) -> CsvImport:
    return CsvImport(
        "people.csv", default_locale="en", default_timezone="UTC", skip_invalid=skip_invalid
    )


def test_rows_are_numbered_with_the_header_as_row_1() -> None:
    records = [
        HEADER,
        ["ok@example.org", "", "", "", "", ""],
        ["jan@@example.pl", "", "", "", "", ""],
        [],  # a blank line still counts as a row, like in a spreadsheet
        ["OK@example.org", "", "fi", "", "", ""],
        ["x@example.org", "", "xx", "Mars/Base", "", ""],
        ["y@example.org", "", "", "Mars/Base", "", ""],
        ["z@example.org", "too", "many", "", "", "", ""],
    ]
    importer = _import(records)
    with pytest.raises(InvalidInputError) as info:
        list(importer.rows(records))
    assert [str(p) for p in info.value.problems] == [
        (
            "people.csv: row 3: invalid email 'jan@@example.pl' "
            "(the part after the @-sign contains invalid characters: '@')"
        ),
        "people.csv: row 5: duplicate of row 2 (OK@example.org)",
        "people.csv: row 6: unknown locale 'xx'",
        (
            "people.csv: row 7: unknown time zone 'Mars/Base' "
            "(use an IANA name like 'Europe/Helsinki')"
        ),
        "people.csv: row 8: expected 6 fields, got 7",
    ]


def test_without_skip_invalid_nothing_after_the_first_problem_is_yielded() -> None:
    records = [HEADER, ["a@example.org", "", "", "", "", ""], ["bad", "", "", "", "", ""]]
    records.append(["c@example.org", "", "", "", "", ""])
    yielded: list[str] = []
    with pytest.raises(InvalidInputError):
        for entry in _import(records).rows(records):
            yielded.append(entry.email)
    assert yielded == ["a@example.org"]


def test_skip_invalid_yields_every_valid_row_and_keeps_the_problems() -> None:
    records = [HEADER, ["a@example.org", "", "", "", "", ""], ["bad", "", "", "", "", ""]]
    records.append(["c@example.org", "", "", "", "", ""])
    importer = _import(records, skip_invalid=True)
    assert [e.email for e in importer.rows(records)] == ["a@example.org", "c@example.org"]
    assert [p.place for p in importer.problems] == ["row 3"]


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_a_bad_header_is_fatal_even_when_skipping(skip_invalid: bool) -> None:
    records = [["mail", "name"], ["a@example.org", ""]]
    with pytest.raises(InvalidInputError, match=r"people.csv: row 1: unknown column 'mail'"):
        list(_import(records, skip_invalid=skip_invalid).rows(records))


def test_an_empty_file_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match=r"people\.csv: empty file"):
        list(_import([]).rows([]))
