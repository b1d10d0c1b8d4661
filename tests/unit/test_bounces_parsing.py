"""VERP tags and bounce parsing: pure, table-driven, plus Hypothesis on arbitrary bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaignbot.delivery.bounces.dsn import classify, parse_report
from campaignbot.delivery.bounces.verp import (
    derive_key,
    make_tag,
    return_path,
    tag_of,
    verify_tag,
)
from campaignbot.email.reports import ReportKind
from tests.bounce_samples import dsn, sample

KEY = derive_key("k" * 40)
BOUNCES = "bounces@example.org"


def test_a_tag_names_its_delivery_and_is_short() -> None:
    address = return_path(BOUNCES, KEY, 123456789)
    assert address.startswith("bounces+") and address.endswith("@example.org")
    tag = tag_of(address, BOUNCES)
    assert tag is not None and len(tag) <= 17
    assert verify_tag(KEY, tag) == 123456789


@pytest.mark.parametrize(
    "tag",
    [
        make_tag(KEY, 7).replace(".", ".x")[:-1],  # tampered mac
        make_tag(derive_key("other" * 8), 7),  # someone else's key
        "7." + make_tag(KEY, 8).split(".")[1],  # another delivery's mac
        "zzz",
        "",
    ],
    ids=["tampered", "other-key", "swapped-id", "malformed", "empty"],
)
def test_forged_tags_are_refused(tag: str) -> None:
    assert verify_tag(KEY, tag) is None


def test_a_tag_survives_an_mta_lowercasing_or_uppercasing_the_local_part() -> None:
    address = return_path(BOUNCES, KEY, 42).upper()
    tag = tag_of(address, BOUNCES)
    assert tag is not None and verify_tag(KEY, tag) == 42


@pytest.mark.parametrize(
    "address",
    ["bounces@example.org", "other+1.aaaaaaaaaa@example.org", "bounces+1.aaaaaaaaaa@evil.org"],
)
def test_only_the_bounce_address_carries_tags(address: str) -> None:
    assert tag_of(address, BOUNCES) is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("5.1.1", ReportKind.HARD),  # bad mailbox
        ("5.1.10", ReportKind.HARD),  # null MX
        ("5.2.1", ReportKind.HARD),  # mailbox disabled
        ("5.4.4", ReportKind.HARD),  # no route to the domain
        ("5.2.2", ReportKind.SOFT),  # mailbox full
        ("5.7.1", ReportKind.SOFT),  # refused by policy: not the address's fault
        ("4.4.1", ReportKind.SOFT),  # gave up after retrying
        (None, ReportKind.SOFT),
    ],
)
def test_only_address_failures_are_hard(status: str | None, kind: ReportKind) -> None:
    assert classify(status) is kind


def test_a_postfix_dsn_gives_status_diagnostic_tag_and_message_id() -> None:
    to = return_path(BOUNCES, KEY, 5)
    data = dsn(
        to,
        [
            (
                "dead@example.net",
                "failed",
                "5.1.1",
                "smtp; 550 5.1.1 <dead@example.net>: unknown user",
            )
        ],
    )
    [report] = parse_report(data, source="maildir", key="maildir:1", bounce_address=BOUNCES)
    assert report.kind is ReportKind.HARD
    assert report.email == "dead@example.net"
    assert report.status == "5.1.1"
    assert report.smtp_code == 550
    assert report.diagnostic == "550 5.1.1 <dead@example.net>: unknown user"
    assert report.tag is not None and verify_tag(KEY, report.tag) == 5
    assert report.message_id == "orig-1@example.org"
    assert report.key == "maildir:1#0"


def test_one_dsn_may_report_several_recipients() -> None:
    data = dsn(
        BOUNCES,
        [
            ("a@example.net", "failed", "5.2.2", "smtp; 552 5.2.2 mailbox full"),
            ("b@example.net", "delayed", "4.4.1", "smtp; 421 try later"),
            ("c@example.net", "failed", "5.1.2", "X-Postfix; Host not found"),
        ],
        message_id=None,
    )
    reports = parse_report(data, source="imap", key="imap:INBOX:1:7", bounce_address=BOUNCES)
    assert [(r.email, r.kind, r.key) for r in reports] == [
        ("a@example.net", ReportKind.SOFT, "imap:INBOX:1:7#0"),
        ("b@example.net", ReportKind.OTHER, "imap:INBOX:1:7#1"),  # a delay is not a bounce
        ("c@example.net", ReportKind.HARD, "imap:INBOX:1:7#2"),
    ]
    assert all(r.tag is None and r.message_id is None for r in reports)


def test_an_arf_abuse_report_is_a_complaint() -> None:
    to = return_path(BOUNCES, KEY, 9)
    data = sample("arf-abuse.eml", **{"bounces+TAG@example.org": to, "MSGID": "<m9@example.org>"})
    [report] = parse_report(data, source="maildir", key="maildir:arf", bounce_address=BOUNCES)
    assert report.kind is ReportKind.COMPLAINT
    assert report.email == "complainer@example.net"
    assert report.message_id == "m9@example.org"
    assert report.tag is not None and verify_tag(KEY, report.tag) == 9
    assert report.diagnostic == "feedback report: abuse"


def test_non_standard_bounces_go_to_flufl_bounce() -> None:
    [report] = parse_report(sample("qmail.eml"), source="maildir", key="q", bounce_address=BOUNCES)
    assert (report.kind, report.email) == (ReportKind.HARD, "gone@example.net")


@pytest.mark.parametrize("name", ["vacation.eml", "malformed.eml"])
def test_anything_else_is_one_report_that_is_not_a_bounce(name: str) -> None:
    reports = parse_report(sample(name), source="maildir", key="x", bounce_address=BOUNCES)
    assert len(reports) >= 1
    assert {r.kind for r in reports} <= {ReportKind.OTHER, ReportKind.SOFT, ReportKind.HARD}
    if name == "vacation.eml":
        assert [(r.kind, r.key) for r in reports] == [(ReportKind.OTHER, "x#0")]


@given(st.binary(max_size=2000))
def test_the_parser_never_raises(data: bytes) -> None:
    reports = parse_report(data, source="maildir", key="k", bounce_address=BOUNCES)
    assert reports and len({r.key for r in reports}) == len(reports)
