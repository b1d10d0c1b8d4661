"""The sender: claims due deliveries, renders and hands them to the transport, records outcomes.

Crash bound: each connection's outcome is committed (group commit, shared by the
connections) before that connection is handed its next message. After a crash
(kill -9) only messages the server accepted and whose commit had not returned can go
out twice: at most one per connection, so at most MAX_CONNECTIONS. Claimed messages
not yet handed over are not duplicates: after the lease expires they are sent once.

Stale guard: right before a message is rendered, a reminder whose event has started
is skipped (reason `stale`); only the '0' reminder's first attempt may still go out
within `stale_after` of the start (campaign/firing.py). Relative wording is computed
from the moment of rendering: a '1d' reminder delayed until 3 hours before its event
is rendered as a '3h' one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError

from campaignbot.campaign.firing import SkipReason, is_stale, lead_label
from campaignbot.campaign.model import Campaign, Event, Status
from campaignbot.campaign.planning import event_start
from campaignbot.delivery.bounces.verp import derive_key, return_path
from campaignbot.delivery.event_state import EventState
from campaignbot.delivery.group_commit import GroupCommit
from campaignbot.delivery.ledger import (
    Claim,
    Failed,
    Ledger,
    Outcome,
    Retry,
    Sent,
    Skipped,
    Uncertain,
)
from campaignbot.delivery.retry import Verdict, decide, retry_delay_s
from campaignbot.delivery.transport import Transport
from campaignbot.email.mime import Wire
from campaignbot.email.render import Recipient, Renderer
from campaignbot.errors import DeliveryError, RelayError
from campaignbot.settings import Settings, secret_key
from campaignbot.storage.states import OPEN_STATUSES, AlertKind, DeliveryStatus

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: the current renderer and campaign (the service swaps both on reload)
RendererProvider = Callable[[], tuple[Renderer, Campaign]]
#: called once per delivery with its outcome (the CLI's progress bar)
OutcomeCallback = Callable[[Claim, Outcome], None]

#: deliveries claimed at once under one lease (not sent yet: not duplicates after a crash)
BATCH_SIZE = 500
#: subscribers' opt-out is re-read for this many deliveries right before sending them
CHUNK_SIZE = 50
#: the service loop looks for due work at least this often, even without a wake-up
POLL_S = 5.0
#: how often a failed outcome write is tried before the batch stops
RECORD_ATTEMPTS = 3
#: on stop, in-flight sends get this long to finish before they are abandoned (released)
DRAIN_S = 6.0
#: while the relay itself fails (connect, TLS, EHLO, AUTH), due deliveries wait this long
RELAY_PAUSE_S = 30.0


@dataclass
class SenderStats:
    """Counters since start, for /metrics and the CLI summary."""

    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    retried: int = 0
    skipped: int = 0
    #: seconds each recent successful hand-over to the transport took
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    last_sent_at: datetime | None = None

    def count(self, outcome: Outcome) -> None:
        if isinstance(outcome, Sent):
            self.sent += 1
        elif isinstance(outcome, Failed):
            self.failed += 1
        elif isinstance(outcome, Uncertain):
            self.uncertain += 1
        elif isinstance(outcome, Retry):
            self.retried += 1
        else:
            self.skipped += 1


def _chunks(items: Sequence[Claim], size: int) -> Iterator[Sequence[Claim]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _recipient(claim: Claim) -> Recipient:
    return Recipient(
        claim.subscriber_id,
        claim.email,
        claim.name,
        claim.locale,
        claim.timezone,
        claim.link_nonce,
    )


def _render_failed(claim: Claim, err: Exception) -> Outcome:
    """A message that cannot be rendered: failed for good, never retried (the same
    input fails the same way) and not a bounce (the address did nothing wrong)."""
    extra = {"action": "render_failed", "alert": claim.alert_key}
    if isinstance(err, UnicodeError):
        # a non-ASCII address (zoë@...) that this message cannot carry: not a bug
        text = f"{claim.alert_key}: cannot write to a non-ASCII address: {err}"
        logger.warning("%s: %s", claim.email, text, extra=extra)
    else:
        text = f"{claim.alert_key}: cannot render: {err}"
        logger.exception("%s: %s: cannot render", claim.alert_key, claim.email, extra=extra)
    return Failed(claim.delivery_id, None, text, None)


class _Batch:
    """One claimed batch on its way through rendering, sending and recording."""

    def __init__(self, claims: Sequence[Claim]) -> None:
        self.claims = claims
        self.outcomes: dict[int, Outcome] = {}
        self.unflushed: list[Outcome] = []  # decided but not yet written to the ledger
        self.consecutive_down = 0
        self.down_error: DeliveryError | None = None
        #: the relay itself failed (RelayError): the rest is released unattempted, paused
        self.relay_down: RelayError | None = None
        self.paused = 0  # deliveries released unattempted because of it
        #: recording failed (the database): hand nothing more to the transport
        self.halted: BaseException | None = None

    def unrecorded(self) -> list[int]:
        return [c.delivery_id for c in self.claims if c.delivery_id not in self.outcomes]


class Sender:
    """Sends what the ledger says is due, with at most `max_connections` sends at once."""

    def __init__(
        self,
        ledger: Ledger,
        transport: Transport,
        renderer_provider: RendererProvider,
        *,
        clock: Clock,
        settings: Settings,
        batch_size: int = BATCH_SIZE,
        poll_s: float = POLL_S,
        rand: Callable[[], float] = random.random,
        durable_each: bool = True,
    ) -> None:
        self.ledger = ledger
        self.transport = transport
        self._event_state = EventState(ledger.db)
        self.stats = SenderStats()
        self._provider = renderer_provider
        self._clock = clock
        self._smtp = settings.smtp
        self._lease_s = settings.lease_s
        self._batch_size = batch_size
        self._poll_s = poll_s
        self._rand = rand
        #: False only to measure what the crash bound costs (benchmarks/bench_durability.py):
        #: outcomes are then written every CHUNK_SIZE, and a crash may repeat that many
        self._durable_each = durable_each
        self._wake = asyncio.Event()
        #: one ledger write of this sender at a time: outcomes and lease renewals touch the
        #: same rows, and two transactions locking them in different orders deadlock on
        #: PostgreSQL (a failed outcome commit would cost a duplicate after a crash)
        self._write_lock = asyncio.Lock()
        #: alerts worked on since their completion was last checked (id -> key)
        self._touched: dict[int, str] = {}
        #: VERP: with a bounce address, each delivery's envelope sender names it (signed)
        self._bounce_address = settings.bounce_address
        self._verp_key = derive_key(secret_key(settings)) if settings.bounce_address else None

    def wake(self) -> None:
        """New work was fired: look for it now instead of at the next poll."""
        self._wake.set()

    # -- loops -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """The service loop: send whatever is due until `stop` is set.

        Sleeps until woken, until the next retry or expired lease is due, or `poll_s`.
        On stop, in-flight sends finish (within DRAIN_S) and unsent claims are released.
        """
        while not stop.is_set():
            self._wake.clear()
            try:
                totals = await self.run_until_idle(stop=stop)
                # relay down: wait out the pause rather than claim and fail again at once
                delay_s = RELAY_PAUSE_S if totals["paused"] else await self._idle_delay_s()
            except Exception:
                # the database or a bug: log, wait, try again; leases protect the work
                logger.exception("sender: unexpected error", extra={"action": "sender_error"})
                delay_s = self._poll_s
            if stop.is_set():
                break
            waiters = [asyncio.ensure_future(e.wait()) for e in (self._wake, stop)]
            try:
                await asyncio.wait(waiters, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def run_until_idle(
        self, *, stop: asyncio.Event | None = None, on_outcome: OutcomeCallback | None = None
    ) -> Counter[str]:
        """Claim and send batches until nothing is due now; returns outcome counts.

        Retries scheduled for later stay in the ledger (the service picks them up).
        """
        stop = stop if stop is not None else asyncio.Event()
        totals: Counter[str] = Counter()
        while not stop.is_set():
            claims = await self.ledger.claim(
                self._batch_size, now=self._clock(), lease_s=self._lease_s
            )
            if claims:
                batch = _Batch(claims)
                await self._send_batch(batch, stop, on_outcome)
                totals.update(type(o).__name__.lower() for o in batch.outcomes.values())
                if batch.paused:
                    totals["paused"] += batch.paused
                    break  # the relay is down: the rest waits for the pause
            if len(claims) < self._batch_size:
                await self._log_completed()
                break
        return totals

    async def _idle_delay_s(self) -> float:
        due = await self.ledger.next_due()
        if due is None:
            return self._poll_s
        return min(self._poll_s, max(0.05, (due - self._clock()).total_seconds()))

    # -- one batch ---------------------------------------------------------------

    async def _send_batch(
        self, batch: _Batch, stop: asyncio.Event, on_outcome: OutcomeCallback | None
    ) -> None:
        renderer, campaign = self._provider()
        events = {e.id: e for e in campaign.events}
        # a notice about an event deleted from the file is written from its last snapshot
        gone = {
            c.event_id
            for c in batch.claims
            if c.kind == AlertKind.NOTICE and c.event_id not in events
        }
        removed = await self._event_state.snapshots(gone) if gone else {}
        send_at = campaign.campaign.send_at
        starts = {e.id: event_start(e, send_at) for e in campaign.events}
        stale_after = campaign.campaign.stale_after_duration
        sender = campaign.campaign.sender_address.addr_spec
        workers_n = max(1, self._smtp.max_connections)
        queue: asyncio.Queue[tuple[Claim, Wire] | None] = asyncio.Queue(2 * workers_n)

        def done(claim: Claim, outcome: Outcome, *, unflushed: bool = True) -> None:
            batch.outcomes[claim.delivery_id] = outcome
            if unflushed:
                batch.unflushed.append(outcome)
            self.stats.count(outcome)
            if on_outcome is not None:
                on_outcome(claim, outcome)

        commits: GroupCommit[Outcome] = GroupCommit(self._record_group)

        async def work() -> None:
            while (item := await queue.get()) is not None:
                claim, message = item
                if stop.is_set() or batch.relay_down is not None or batch.halted is not None:
                    continue  # left unrecorded: released below
                if batch.down_error is not None:
                    done(claim, self._temporary(claim, batch.down_error))
                    continue
                envelope = self._envelope_sender(claim, sender)
                outcome = await self._deliver(batch, claim, message, envelope)
                if outcome is None:  # the relay is down: released below, unattempted
                    continue
                done(claim, outcome, unflushed=not self._durable_each)
                if not self._durable_each:
                    continue
                try:
                    # durable before this connection takes its next message: the crash bound
                    await commits.submit(outcome)
                except Exception as err:
                    logger.exception(
                        "sender: cannot record outcomes; stopping this batch",
                        extra={"action": "record_failed"},
                    )
                    batch.outcomes.pop(claim.delivery_id, None)
                    batch.halted = err

        workers = [asyncio.create_task(work()) for _ in range(workers_n)]
        renewer = asyncio.create_task(self._renew_lease(batch))
        try:
            for chunk in _chunks(batch.claims, CHUNK_SIZE):
                if stop.is_set() or batch.relay_down is not None or batch.halted is not None:
                    break
                # opt-out is checked again right before this chunk is handed over
                statuses = await self.ledger.subscriber_statuses(c.subscriber_id for c in chunk)
                now = self._clock()
                for claim in chunk:
                    if stop.is_set() or batch.relay_down is not None:
                        break
                    if batch.down_error is not None:  # no point rendering the rest
                        done(claim, self._temporary(claim, batch.down_error))
                        continue
                    event = events.get(claim.event_id)
                    if event is None and claim.kind == AlertKind.NOTICE:
                        event = removed.get(claim.event_id)
                    reason = self._skip_reason(claim, statuses, event, starts, stale_after, now)
                    if reason is not None:
                        done(claim, Skipped(claim.delivery_id, reason))
                        continue
                    assert event is not None  # a claim without one was skipped
                    try:
                        message = self._render(renderer, event, claim, starts, now)
                    except Exception as err:  # noqa: BLE001 - logged in _render_failed
                        done(claim, _render_failed(claim, err))
                        continue
                    await queue.put((claim, message))
                if len(batch.unflushed) >= CHUNK_SIZE:
                    await self._flush(batch)
        finally:
            for _ in workers:
                await queue.put(None)
            _, late = await asyncio.wait(workers, timeout=DRAIN_S if stop.is_set() else None)
            for task in late:  # stopping and a send hangs: abandon it (its claim is released)
                task.cancel()
            for task in workers:
                with suppress(asyncio.CancelledError):
                    await task
            renewer.cancel()
            with suppress(asyncio.CancelledError):
                await renewer
            await self._finish(batch)

    async def _record_group(self, outcomes: Sequence[Outcome]) -> None:
        await self._record(outcomes)

    async def _record(self, outcomes: Sequence[Outcome]) -> None:
        """Write outcomes; a transient conflict (deadlock, lock timeout) is tried again."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                async with self._write_lock:
                    await self.ledger.record(outcomes, now=self._clock())
                return
            except DBAPIError as err:
                if attempt == RECORD_ATTEMPTS:
                    raise
                logger.warning(
                    "sender: recording %d outcomes failed (%s); trying again",
                    len(outcomes),
                    str(err.orig).splitlines()[0] if err.orig else type(err).__name__,
                    extra={"action": "record_retry"},
                )
                await asyncio.sleep(0.05 * attempt)

    async def _flush(self, batch: _Batch) -> None:
        outcomes, batch.unflushed = batch.unflushed, []
        await self._record(outcomes)

    async def _finish(self, batch: _Batch) -> None:
        await self._flush(batch)
        unsent = batch.unrecorded()
        if unsent:
            now = self._clock()
            # relay down: nobody's attempt, but not due again until the pause is over
            paused = now + timedelta(seconds=RELAY_PAUSE_S) if batch.relay_down else None
            async with self._write_lock:
                await self.ledger.release(now=now, delivery_ids=unsent, not_before=paused)
            if batch.relay_down is not None:
                batch.paused = len(unsent)
        self._touched.update((c.alert_id, c.alert_key) for c in batch.claims)

    async def _renew_lease(self, batch: _Batch) -> None:
        """Keep the lease while a slow batch is sent, so nobody takes it over meanwhile."""
        interval_s = max(0.2, self._lease_s / 3)
        while True:
            await asyncio.sleep(interval_s)
            async with self._write_lock:
                await self.ledger.renew(
                    batch.unrecorded(), now=self._clock(), lease_s=self._lease_s
                )

    # -- one delivery ------------------------------------------------------------

    def _skip_reason(
        self,
        claim: Claim,
        statuses: dict[int, str],
        event: Event | None,
        starts: dict[str, datetime],
        stale_after: timedelta,
        now: datetime,
    ) -> str | None:
        status = statuses.get(claim.subscriber_id, "removed")
        if status != "active":
            return f"subscriber {status}"
        if event is None:
            return "event no longer in the config"
        if claim.kind == AlertKind.ALERT:
            if event.status is not Status.SCHEDULED:
                return f"event {event.status.value}"
            first_attempt = not claim.failed_before and not claim.was_uncertain
            if is_stale(
                claim.reminder,
                starts[event.id],
                now=now,
                first_attempt=first_attempt,
                stale_after=stale_after,
            ):
                return SkipReason.STALE.value
        return None

    def _envelope_sender(self, claim: Claim, sender: str) -> str:
        """The From address, or with a bounce address `bounces+TAG@domain` (VERP)."""
        if self._bounce_address is None or self._verp_key is None:
            return sender
        return return_path(self._bounce_address, self._verp_key, claim.delivery_id)

    def _render(
        self,
        renderer: Renderer,
        event: Event,
        claim: Claim,
        starts: dict[str, datetime],
        now: datetime,
    ) -> Wire:
        to = _recipient(claim)
        if claim.kind == AlertKind.NOTICE:
            return renderer.wire_notice(
                event,
                claim.change or "rescheduled",
                to,
                now=now,
                sequence=claim.sequence,
                previous_when=claim.previous_when,
            )
        # the wording follows the real lead at this moment, not the planned one
        reminder = lead_label(claim.reminder, starts[event.id], now=now)
        return renderer.wire_alert(event, reminder, to, now=now, sequence=claim.sequence)

    async def _deliver(
        self, batch: _Batch, claim: Claim, message: Wire, sender: str
    ) -> Outcome | None:
        started = time.perf_counter()
        try:
            reply = await self.transport.send(message.data, sender=sender, recipient=claim.email)
        except RelayError as err:
            # the relay, not this recipient: pause the batch, count no attempt
            batch.relay_down = batch.relay_down or err
            return None
        except DeliveryError as err:
            if (err.code is None and not err.after_data) or err.code == 421:
                batch.consecutive_down += 1
                # the server is gone, not this recipient: do not try the rest one by one
                if batch.consecutive_down >= 2 * self._smtp.max_connections:
                    batch.down_error = err
            outcome = self._failure(claim, err)
            logger.debug(
                "%s: %s: %s",
                claim.alert_key,
                claim.email,
                err,
                extra={"action": f"delivery_{type(outcome).__name__.lower()}"},
            )
            return outcome
        except Exception as err:  # a transport bug must not stop the other deliveries
            logger.exception("%s: %s: transport error", claim.alert_key, claim.email)
            return self._failure(claim, DeliveryError(f"{claim.email}: {err!r}"))
        batch.consecutive_down = 0
        self.stats.latencies_s.append(time.perf_counter() - started)
        self.stats.last_sent_at = self._clock()
        logger.debug(
            "%s: %s: sent",
            claim.alert_key,
            claim.email,
            extra={"action": "delivery_sent", "alert": claim.alert_key},
        )
        return Sent(claim.delivery_id, message.message_id, reply)

    def _failure(self, claim: Claim, error: DeliveryError) -> Outcome:
        decision = decide(
            error,
            attempts=claim.attempts,
            created_at=claim.created_at,
            was_uncertain=claim.was_uncertain,
            now=self._clock(),
            max_attempts=self._smtp.max_attempts,
            retry_for_s=self._smtp.retry_for_s,
            rand=self._rand(),
        )
        text = str(error)
        if decision.verdict is Verdict.RETRY:
            assert decision.next_attempt_at is not None
            return Retry(claim.delivery_id, error.code, text, decision.next_attempt_at)
        if decision.verdict is Verdict.UNCERTAIN:
            assert decision.next_attempt_at is not None
            return Uncertain(claim.delivery_id, text, decision.next_attempt_at)
        bounce = claim.subscriber_id if decision.hard_bounce else None
        return Failed(claim.delivery_id, error.code, f"{text} ({decision.reason})", bounce)

    def _temporary(self, claim: Claim, error: DeliveryError) -> Outcome:
        """Not attempted because the transport is down: back off, whatever its history."""
        delay_s = retry_delay_s(claim.attempts, rand=self._rand())
        at = self._clock() + timedelta(seconds=delay_s)
        return Retry(claim.delivery_id, error.code, f"not attempted, transport down: {error}", at)

    async def _log_completed(self) -> None:
        """INFO once per alert when none of its deliveries is open any more."""
        for alert_id, key in sorted(self._touched.items()):
            counts = await self.ledger.alert_counts(alert_id)
            if any(counts.get(s, 0) for s in OPEN_STATUSES):
                continue
            if self._touched.pop(alert_id, None) is None:
                continue  # the other loop (run vs run_until_idle) logged it
            logger.info(
                "%s: completed: %d sent, %d failed, %d skipped",
                key,
                counts.get(DeliveryStatus.SENT, 0),
                counts.get(DeliveryStatus.FAILED, 0),
                counts.get(DeliveryStatus.SKIPPED, 0),
                extra={"action": "alert_completed", "alert": key, "counts": counts},
            )


__all__ = ["Sender", "SenderStats"]
