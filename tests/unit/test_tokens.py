"""Signed link tokens: round trip, tampering, forgery, purpose and expiry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer

from campaignbot.email.tokens import ROUTES, LinkSigner
from campaignbot.errors import TokenError

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


def test_confirm_links_expire_after_seven_days_and_others_never() -> None:
    clock = FakeClock(1_750_000_000)
    signer = LinkSigner(SECRET, clock=clock)
    confirm = signer.sign("confirm", 5)
    unsubscribe = signer.sign("unsubscribe", 5)
    clock.now += 6 * DAY_S
    assert signer.verify(confirm, "confirm") == 5
    clock.now += 2 * DAY_S
    with pytest.raises(TokenError, match="expired"):
        signer.verify(confirm, "confirm")
    clock.now += 3650 * DAY_S
    assert signer.verify(unsubscribe, "unsubscribe") == 5


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
    assert signer.verify(tokens["calendar"], "calendar", max_age_s=10**12) == subscriber_id
