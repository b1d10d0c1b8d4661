"""RelayHealth: state and log lines from a sequence of outcomes, time passed in."""

from __future__ import annotations

import logging

import pytest

from campaignbot.delivery.relay_health import RelayHealth


def test_it_is_unknown_until_the_first_outcome() -> None:
    health = RelayHealth("relay:587", clock=lambda: 5.0)
    assert health.as_dict() == {
        "relay": "relay:587",
        "status": "unknown",
        "last_success_at": None,
        "last_failure_at": None,
        "last_failure": None,
        "consecutive_failures": 0,
    }
    assert not health.is_down


@pytest.mark.parametrize(
    ("outcomes", "down_after", "status", "logs"),
    [
        ("ok", 1, "up", []),
        ("x", 1, "down", ["WARNING"]),
        ("xxx", 1, "down", ["WARNING"]),  # once, not per failure
        ("xxok", 1, "up", ["WARNING", "INFO"]),
        ("x", 2, "unknown", []),
        ("okx", 2, "up", []),  # one failure is not an outage yet
        ("okxx", 2, "down", ["WARNING"]),
        ("xokxok", 1, "up", ["WARNING", "INFO", "WARNING", "INFO"]),
    ],
)
def test_outcomes_make_the_state_and_one_line_per_change(
    caplog: pytest.LogCaptureFixture, outcomes: str, down_after: int, status: str, logs: list[str]
) -> None:
    caplog.set_level(logging.INFO, logger="campaignbot.delivery.relay_health")
    now = [0.0]
    health = RelayHealth("relay:587", down_after=down_after, clock=lambda: now[0])
    for step in outcomes.replace("ok", "o"):
        now[0] += 1
        if step == "o":
            health.success()
        else:
            health.failure("cannot connect: refused")
    assert health.as_dict()["status"] == status
    assert [r.levelname for r in caplog.records] == logs
    if "WARNING" in logs:
        assert caplog.records[0].getMessage() == (
            "relay:587: SMTP relay is down: cannot connect: refused"
        )


def test_it_keeps_the_last_failure_after_recovering() -> None:
    now = [10.0]
    health = RelayHealth("relay:587", clock=lambda: now[0])
    health.failure("AUTH failed: 535 5.7.8 bad credentials")
    now[0] = 20.0
    health.success()
    assert health.as_dict() | {"relay": None} == {
        "relay": None,
        "status": "up",
        "last_success_at": 20.0,
        "last_failure_at": 10.0,
        "last_failure": "AUTH failed: 535 5.7.8 bad credentials",
        "consecutive_failures": 0,
    }
