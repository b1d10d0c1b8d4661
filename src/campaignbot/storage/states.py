"""The ledger's vocabulary: the values stored in `deliveries.status`, `alerts.kind` and `alerts.status`.

StrEnums, so they are written to and compared with the database as their plain values.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    """Where one message to one subscriber stands."""

    PENDING = "pending"  # written when its alert fired, not yet claimed
    SENDING = "sending"  # claimed by a sender under a lease
    RETRY = "retry"  # a temporary failure; due again at next_attempt_at
    UNCERTAIN = "uncertain"  # a timeout after the data was sent: resent once
    SENT = "sent"  # accepted by the relay
    FAILED = "failed"  # refused for good, or out of attempts
    SKIPPED = "skipped"  # not sent on purpose: opted out, too late, event gone
    BOUNCED = "bounced"  # accepted, then bounced (a DSN or a relay's event): replaces sent
    COMPLAINED = "complained"  # accepted, then reported as spam: replaces sent


#: statuses a sender may claim when due (`sending` too, once its lease expired)
DUE_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.RETRY, DeliveryStatus.UNCERTAIN)
#: statuses that are not final
OPEN_STATUSES = (*DUE_STATUSES[:1], DeliveryStatus.SENDING, *DUE_STATUSES[1:])
#: statuses that are final
FINAL_STATUSES = (
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.COMPLAINED,
)


class AlertKind(StrEnum):
    """What an `alerts` row announces."""

    ALERT = "alert"  # a reminder of an event
    NOTICE = "notice"  # an event changed after subscribers were alerted


class AlertState(StrEnum):
    """Whether an alert's deliveries were written or it was recorded as too late."""

    FIRED = "fired"
    SKIPPED = "skipped"
