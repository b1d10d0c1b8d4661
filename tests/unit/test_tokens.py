"""Signed link tokens: round trip, tampering, forgery, purpose and expiry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer

from campaignbot.email.tokens import ROUTES, LinkSigner, LinkToken, calendar_feed_url
from campaignbot.errors import TokenError, TokenReason

SECRET = "test-secret-key"
DAY_S = 24 * 3600


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("purpose", sorted(ROUTES))
def test_a_token_round_trips_to_the_subscriber_id(purpose: str) -> None:
    signer = LinkSigner(SECRET)
    token = signer.sign(purpose, 12345)
    assert signer.verify(token, purpose) == 12345


def test_tokens_are_what_itsdangerous_makes_and_reads() -> None:
    token = LinkSigner(SECRET).sign("unsubscribe", 7)
    assert URLSafeTimedSerializer(SECRET, salt="unsubscribe").loads(token) == 7


def test_a_tampered_token_is_rejected() -> None:
    signer = LinkSigner(SECRET)
    token = signer.sign("unsubscribe", 1)
    payload, timestamp, signature = token.split(".")
    forged_payload = LinkSigner(SECRET).sign("unsubscribe", 2).split(".")[0]
    for bad in (
        f"{forged_payload}.{timestamp}.{signature}",  # another subscriber's id
        # the first character: the last one's low bits are base64 padding, ignored
        f"{payload}.{timestamp}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}",
        token[:-3],
        "",
        "not-a-token",
    ):
        with pytest.raises(TokenError):
            signer.verify(bad, "unsubscribe")


def test_a_token_signed_with_another_key_is_rejected() -> None:
    forged = LinkSigner("someone-elses-key").sign("unsubscribe", 1)
    with pytest.raises(TokenError, match="invalid unsubscribe link"):
        LinkSigner(SECRET).verify(forged, "unsubscribe")


def test_a_token_for_one_purpose_does_not_work_for_another() -> None:
    signer = LinkSigner(SECRET)
    token = signer.sign("unsubscribe", 1)
    with pytest.raises(TokenError):
        signer.verify(token, "confirm")
    with pytest.raises(TokenError):
        signer.verify(signer.sign("calendar", 1), "preferences")


def test_confirm_links_expire_after_7_days_preferences_after_90_unsubscribe_never() -> None:
    clock = FakeClock(1_750_000_000)
    signer = LinkSigner(SECRET, clock=clock)
    confirm = signer.sign("confirm", 5, "n0nce")
    preferences = signer.sign("preferences", 5, "n0nce")
    unsubscribe = signer.sign("unsubscribe", 5, "n0nce")
    clock.now += 6 * DAY_S
    assert signer.verify(confirm, "confirm") == 5
    clock.now += 2 * DAY_S
    with pytest.raises(TokenError, match="expired") as expired:
        signer.verify(confirm, "confirm")
    assert expired.value.reason is TokenReason.EXPIRED  # what the web page keys on
    with pytest.raises(TokenError) as forged:
        LinkSigner("another-secret-of-at-least-32-bytes!!").verify(confirm, "confirm")
    assert forged.value.reason is TokenReason.INVALID
    clock.now += 81 * DAY_S
    assert signer.verify(preferences, "preferences") == 5
    clock.now += 2 * DAY_S
    with pytest.raises(TokenError, match="expired"):
        signer.verify(preferences, "preferences")
    # RFC 8058: the one-click link in an old email keeps working (bound by the nonce)
    clock.now += 3650 * DAY_S
    assert signer.open(unsubscribe, "unsubscribe") == LinkToken(5, "n0nce")


def test_a_token_carries_the_rows_link_nonce() -> None:
    signer = LinkSigner(SECRET)
    token = signer.sign("unsubscribe", 7, "AbC-_9xyz")
    assert signer.open(token, "unsubscribe") == LinkToken(7, "AbC-_9xyz")
    assert signer.open(signer.sign("unsubscribe", 7), "unsubscribe") == LinkToken(7, "")
    assert token != signer.sign("unsubscribe", 7, "other")
    with pytest.raises(ValueError, match="nonce"):
        signer.sign("unsubscribe", 7, "bad nonce.")


def test_old_keys_verify_during_a_rotation_new_links_use_the_new_key() -> None:
    old_key, new_key = "o" * 32, "n" * 32
    old_token = LinkSigner(old_key).sign("unsubscribe", 1, "abc")
    rotated = LinkSigner(new_key, fallbacks=[old_key])
    assert rotated.open(old_token, "unsubscribe") == LinkToken(1, "abc")
    new_token = rotated.sign("unsubscribe", 1, "abc")
    assert LinkSigner(new_key).verify(new_token, "unsubscribe") == 1
    assert rotated.sign_many(("unsubscribe",), 1, "abc")["unsubscribe"] == new_token
    with pytest.raises(TokenError):
        LinkSigner(old_key).verify(new_token, "unsubscribe")
    with pytest.raises(TokenError):
        LinkSigner(new_key).verify(old_token, "unsubscribe")  # fallback removed


def test_the_calendar_link_is_the_public_feed() -> None:
    assert (
        calendar_feed_url("https://alerts.example.org/") == "webcal://alerts.example.org/events.ics"
    )
    assert calendar_feed_url("http://127.0.0.1:8080") == "webcal://127.0.0.1:8080/events.ics"


def test_max_age_can_be_given_per_call() -> None:
    clock = FakeClock(1_750_000_000)
    signer = LinkSigner(SECRET, clock=clock)
    token = signer.sign("preferences", 9)
    clock.now += 120
    assert signer.verify(token, "preferences", max_age_s=300) == 9
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, "preferences", max_age_s=60)


def test_a_token_with_a_payload_that_is_not_an_id_is_rejected() -> None:
    token = URLSafeTimedSerializer(SECRET, salt="unsubscribe").dumps("everyone")
    with pytest.raises(TokenError, match="invalid"):
        LinkSigner(SECRET).verify(token, "unsubscribe")


@pytest.mark.parametrize(
    ("purpose", "route"),
    [
        ("unsubscribe", "/unsubscribe"),
        ("preferences", "/preferences"),
        ("confirm", "/confirm"),
        ("calendar", "/events.ics"),
    ],
)
def test_links_point_at_the_public_routes(purpose: str, route: str) -> None:
    signer = LinkSigner(SECRET, public_url="https://alerts.example.org/")
    link = signer.link(purpose, 3)
    prefix = f"https://alerts.example.org{route}?t="
    assert link.startswith(prefix)
    assert signer.verify(link.removeprefix(prefix), purpose) == 3


def test_unknown_purposes_and_empty_keys_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="purpose"):
        LinkSigner(SECRET).sign("delete-everything", 1)
    with pytest.raises(ValueError, match="secret"):
        LinkSigner("")


@given(st.integers(min_value=0, max_value=2**63), st.integers(min_value=0, max_value=2**32))
def test_sign_many_makes_exactly_the_tokens_sign_makes(subscriber_id: int, now: int) -> None:
    signer = LinkSigner(SECRET, clock=lambda: now)
    purposes = ("unsubscribe", "preferences", "calendar")
    tokens = signer.sign_many(purposes, subscriber_id)
    assert tokens == {p: signer.sign(p, subscriber_id) for p in purposes}
    bound = signer.sign_many(purposes, subscriber_id, "n0nce")
    assert bound == {p: signer.sign(p, subscriber_id, "n0nce") for p in purposes}
    assert signer.verify(tokens["calendar"], "calendar", max_age_s=10**12) == subscriber_id
