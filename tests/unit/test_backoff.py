"""The pure retry policy: delays, give-up rules, uncertain outcomes, hard bounces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from campaignbot.delivery.retry import Decision, Verdict, decide, is_hard_bounce, retry_delay_s
from campaignbot.errors import DeliveryError

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, 0.5, 30.0),
        (2, 0.5, 60.0),
        (3, 0.5, 120.0),
        (7, 0.5, 1920.0),
        (8, 0.5, 3600.0),
        (50, 0.5, 3600.0),
        (1, 0.0, 24.0),
        (1, 1.0, 36.0),
        (8, 0.0, 2880.0),
    ],
    ids=[
        "first",
        "second",
        "third",
        "seventh",
        "capped",
        "far",
        "jitter-low",
        "jitter-high",
        "cap-low",
    ],
)
def test_delay_doubles_from_30_s_to_an_hour_with_20_percent_jitter(
    attempt: int, rand: float, expected: float
) -> None:
    assert retry_delay_s(attempt, rand=rand) == pytest.approx(expected)


def _decide(error: DeliveryError, **overrides: object) -> Decision:
    options: dict[str, object] = {
        "attempts": 1,
        "created_at": NOW,
        "was_uncertain": False,
        "now": NOW,
        "max_attempts": 6,
        "retry_for_s": 86400.0,
        "rand": 0.5,
    }
    options.update(overrides)
    return decide(error, **options)  # type: ignore[arg-type]


TEMPORARY = DeliveryError("h:25: x@y: 451 4.3.0 try later", code=451)
DISCONNECT = DeliveryError("h:25: x@y: Connection lost during RCPT")
AFTER_DATA = DeliveryError("h:25: x@y: no reply after the message data", after_data=True)
NO_USER = DeliveryError("h:25: x@y: 550 5.1.1 no such user", code=550, permanent=True)
POLICY = DeliveryError("h:25: x@y: 550 5.7.1 spam", code=550, permanent=True)


@pytest.mark.parametrize(
    ("error", "overrides", "verdict", "delay_s"),
    [
        (TEMPORARY, {}, Verdict.RETRY, 30),
        (DISCONNECT, {"attempts": 3}, Verdict.RETRY, 120),
        (TEMPORARY, {"attempts": 6}, Verdict.FAILED, None),
        (TEMPORARY, {"created_at": NOW - timedelta(hours=24)}, Verdict.FAILED, None),
        (AFTER_DATA, {}, Verdict.UNCERTAIN, 30),
        (AFTER_DATA, {"was_uncertain": True}, Verdict.FAILED, None),
        (TEMPORARY, {"was_uncertain": True}, Verdict.FAILED, None),
        (NO_USER, {}, Verdict.FAILED, None),
        (POLICY, {}, Verdict.FAILED, None),
    ],
    ids=[
        "4xx-retries",
        "disconnect-retries-later",
        "max-attempts",
        "retry-window-over",
        "after-data-uncertain",
        "uncertain-twice-fails",
        "failure-after-uncertain-fails",
        "5xx-fails",
        "5xx-policy-fails",
    ],
)
def test_decide(
    error: DeliveryError, overrides: dict[str, object], verdict: Verdict, delay_s: float | None
) -> None:
    decision = _decide(error, **overrides)
    assert decision.verdict is verdict
    if delay_s is None:
        assert decision.next_attempt_at is None
    else:
        assert decision.next_attempt_at == NOW + timedelta(seconds=delay_s)


@pytest.mark.parametrize(
    ("error", "bounce"),
    [
        (NO_USER, True),
        (DeliveryError("550 mailbox unavailable", code=550, permanent=True), True),
        (DeliveryError("553 5.1.3 bad address", code=553, permanent=True), True),
        (POLICY, False),
        (DeliveryError("554 5.7.1 rejected", code=554, permanent=True), False),
        (TEMPORARY, False),
    ],
    ids=["5.1.1", "550-plain", "553", "5.7.1-policy", "554-content", "4xx"],
)
def test_only_address_rejections_are_hard_bounces(error: DeliveryError, bounce: bool) -> None:
    assert is_hard_bounce(error) is bounce
    assert _decide(error).hard_bounce is (bounce and error.permanent)
