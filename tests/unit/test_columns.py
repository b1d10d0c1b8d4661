"""CSV headers from other tools, `--map` and delimiter sniffing (pure)."""

from __future__ import annotations

import pytest

from campaignbot.subscribers.columns import parse_header, parse_mapping, sniff_delimiter


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("email,name,locale", ","),
        ("email;name;locale", ";"),
        ("email\tname\tlocale", "\t"),
        ("email", ","),
        ('"Email Address";"First Name"', ";"),
    ],
    ids=["comma", "semicolon", "tab", "one-column", "quoted-semicolon"],
)
def test_sniff_delimiter(line: str, expected: str) -> None:
    assert sniff_delimiter(line) == expected


def test_mailchimp_header_maps_to_ours_and_ignores_the_rest() -> None:
    header = ["Email Address", "First Name", "Last Name", "MEMBER_RATING", "CC", "TIMEZONE"]
    assert parse_header(header) == {
        "email": 0,
        "first_name": 1,
        "last_name": 2,
        "countries": 4,
        "timezone": 5,
    }


def test_listmonk_header_keeps_the_status_for_the_blocklist() -> None:
    header = ["uuid", "email", "name", "attributes", "status", "created_at", "updated_at"]
    assert parse_header(header) == {"email": 1, "name": 2, "listmonk_status": 4}


def test_map_renames_and_ignores() -> None:
    mapping = parse_mapping(["E-post = email", "Telefon="])
    assert mapping == {"e-post": "email", "telefon": None}
    assert parse_header(["E-post", "Telefon"], mapping) == {"email": 0}


@pytest.mark.parametrize(
    ("item", "message"),
    [("email", "expected 'COLUMN=name'"), ("Mail=address", "'address' is not one of")],
    ids=["no-equals", "unknown-target"],
)
def test_a_bad_map_is_a_one_line_error(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_mapping([item])


def test_an_unknown_column_suggests_map() -> None:
    with pytest.raises(ValueError, match=r"unknown column 'Favourite'.*--map 'Favourite=email'"):
        parse_header(["email", "Favourite"])


def test_two_columns_for_one_field_are_an_error() -> None:
    with pytest.raises(ValueError, match="'email' appears twice"):
        parse_header(["email", "Email Address"])
