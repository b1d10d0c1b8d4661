"""Pure retry policy: what a failed delivery attempt becomes, and when it is tried again."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from campaignbot.errors import DeliveryError

BASE_S = 30.0
CAP_S = 3600.0
JITTER = 0.2

#: Replies that say the address itself is bad (RFC 5321 §4.2.3): 550 mailbox unavailable,
#: 551 user not local, 553 mailbox name not allowed. A 5xx with an enhanced status code
#: of another class than 5.1.x (address) or 5.2.x (mailbox) is about the message or a
#: policy, not the address, so it does not count as a hard bounce.
_BOUNCE_CODES = frozenset({550, 551, 553})
_ENHANCED = re.compile(r"\b5\.(\d{1,3})\.\d{1,3}\b")


class Verdict(StrEnum):
    RETRY = "retry"
    UNCERTAIN = "uncertain"
    FAILED = "failed"


@dataclass(frozen=True)
class Decision:
    """What to record for one failed attempt."""

    verdict: Verdict
    next_attempt_at: datetime | None = None  # RETRY and UNCERTAIN
    hard_bounce: bool = False  # FAILED because the address does not exist
    reason: str = ""


def retry_delay_s(attempt: int, *, rand: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    30 s doubling per attempt, capped at an hour, then spread ±20 % by `rand` in [0, 1)
    so that a batch that failed together does not retry together.
    """
    exponent = max(0, attempt - 1)
    delay = CAP_S if exponent >= 12 else min(CAP_S, BASE_S * 2**exponent)
    return delay * (1.0 + JITTER * (2.0 * rand - 1.0))


def is_hard_bounce(error: DeliveryError) -> bool:
    """A permanent rejection of the recipient's address (counts towards suppression)."""
    if not error.permanent or error.code not in _BOUNCE_CODES:
        return False
    match = _ENHANCED.search(str(error))
    return match is None or match.group(1) in ("1", "2")


def decide(
    error: DeliveryError,
    *,
    attempts: int,
    created_at: datetime,
    was_uncertain: bool,
    now: datetime,
    max_attempts: int,
    retry_for_s: float,
    rand: float,
) -> Decision:
    """Turn a failed attempt into retry, uncertain or failed.

    - after the data was sent (timeout/disconnect awaiting the final reply) the outcome
      is unknown: `uncertain`, retried once, since a duplicate beats a lost alert;
    - a delivery that was already uncertain gets no further chance: failed;
    - 5xx: failed at once;
    - otherwise retry with backoff until `max_attempts` attempts or `retry_for_s`
      since the delivery was created.
    """
    if was_uncertain:
        return Decision(Verdict.FAILED, reason="failed again after an uncertain attempt")
    if error.after_data:
        at = now + timedelta(seconds=retry_delay_s(attempts, rand=rand))
        return Decision(Verdict.UNCERTAIN, next_attempt_at=at, reason="outcome unknown")
    if error.permanent:
        return Decision(Verdict.FAILED, hard_bounce=is_hard_bounce(error), reason="permanent")
    at = now + timedelta(seconds=retry_delay_s(attempts, rand=rand))
    if attempts >= max_attempts:
        return Decision(Verdict.FAILED, reason=f"gave up after {attempts} attempts")
    if (at - created_at).total_seconds() > retry_for_s:
        return Decision(Verdict.FAILED, reason=f"gave up after {retry_for_s:g} s of retries")
    return Decision(Verdict.RETRY, next_attempt_at=at, reason="temporary")
