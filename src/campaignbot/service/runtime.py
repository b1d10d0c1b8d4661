"""Composition root: builds everything from Settings and runs the service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette

from campaignbot import __version__
from campaignbot.campaign.firing import Fire, SkipReason, due_actions, fire_window_end
from campaignbot.campaign.model import Campaign
from campaignbot.campaign.planning import PlannedAlert, event_start
from campaignbot.delivery.bounces.reader import recorder_for
from campaignbot.delivery.bounces.webhooks import hook_recorder, webhook_providers
from campaignbot.delivery.event_state import EventState
from campaignbot.delivery.ledger import Ledger
from campaignbot.delivery.sender import Sender
from campaignbot.delivery.transport import MaildirTransport, Transport, make_transport
from campaignbot.email.render import Renderer
from campaignbot.email.snapshot import Snapshot, load_snapshot
from campaignbot.email.tokens import LinkSigner
from campaignbot.errors import InvalidInputError
from campaignbot.service.bounce_reading import BounceReading
from campaignbot.service.health import Health, HealthSources
from campaignbot.service.metrics import MetricsSources, ServiceMetrics
from campaignbot.service.scheduler import AlertScheduler
from campaignbot.settings import Settings, secret_key
from campaignbot.storage.database import Database, open_database
from campaignbot.subscribers.store import SubscriberStore, audience_clause
from campaignbot.web.admin import AdminContext, create_admin_app
from campaignbot.web.app import WebContext, create_app, listen
from campaignbot.web.dashboard.context import DashboardContext
from campaignbot.web.hooks import HookContext

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TickError:
    """The last wake-up that failed: when, which, and why (shown by /healthz)."""

    at: datetime
    reason: str
    error: str


def _window(zero: PlannedAlert | None, start: datetime) -> datetime:
    return start if zero is None else fire_window_end(zero, start)


class Service:
    """Scheduler, sender and web server over one database and one transport.

    The ledger decides, not the scheduler: every wake-up (a date job, the reconcile
    tick, start-up, a reload, SIGHUP) calls `tick`, which asks the pure
    `firing.due_actions` what to do with each due alert not yet in the ledger, carries
    it out, and sweeps deliveries of started events (the stale guard). Errors are
    handled the same on every path: logged with context, kept for /healthz, and the
    service keeps running.
    """

    def __init__(
        self, settings: Settings, *, clock: Clock = utc_now, web: bool = True, watch: bool = True
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        #: the reloadable state, replaced whole (one assignment) on reload
        self.snapshot: Snapshot = load_snapshot(settings)
        self.db: Database = open_database(settings.database_url)
        self.transport: Transport = make_transport(settings.smtp, settings.maildir)
        self.store = SubscriberStore(self.db)
        self.ledger = Ledger(self.db, owner=self.owner)
        self.events = EventState(self.db)
        self.sender = Sender(
            self.ledger, self.transport, self._rendering, clock=clock, settings=settings
        )
        self.scheduler = AlertScheduler(self.tick)
        self.bounces = BounceReading(self.db, settings, clock=clock)
        self.health = Health(
            HealthSources(
                db_ping=self.db.ping,
                campaign_loaded=lambda: True,  # a Service exists only over a valid campaign
                scheduler_running=lambda: self.scheduler.running,
                next_due=self.scheduler.next_due,
                transport=self.transport,
                clock=clock,
                bounce_reading=self.bounces.state,
                last_tick_error=self._tick_error_report,
            ),
            cache_s=30.0,
            require_scheduler=True,
        )
        self.metrics = ServiceMetrics(
            MetricsSources(
                ledger=self.ledger,
                store=self.store,
                stats=lambda: self.sender.stats,
                next_due=self.scheduler.next_due,
                clock=clock,
                relay=self.transport.health,
            )
        )
        self.started_at: datetime | None = None
        self._web = web
        self._watch_files = watch
        self._fire_lock = asyncio.Lock()
        #: when `tick` last looked; alerts due since then are news to this process
        self._fire_checked_at: datetime | None = None
        #: the last tick's failure (None after a tick that succeeded), for /healthz
        self.last_tick_error: TickError | None = None
        # a file change and a SIGHUP may arrive together: apply one reload at a time
        self._reload_lock = asyncio.Lock()
        #: reload requests from signal handlers, applied by one awaited task
        self._reload_requests: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        self._web_servers: list[Any] = []
        self._migrated = False  # stop() after a failed start has nothing to release

    @property
    def campaign(self) -> Campaign:
        return self.snapshot.campaign

    @property
    def renderer(self) -> Renderer:
        return self.snapshot.renderer

    @property
    def signer(self) -> LinkSigner:
        return self.snapshot.signer

    def _rendering(self) -> tuple[Renderer, Campaign]:
        snapshot = self.snapshot
        return snapshot.renderer, snapshot.campaign

    def web_context(self) -> WebContext:
        """What the public pages may use: the snapshot and a few ports, not the service."""
        return WebContext(
            settings=self.settings,
            snapshot=lambda: self.snapshot,
            store=self.store,
            clock=self.clock,
            send_mail=self.transport.send,
            sequences=self.events.sequences,
            ready=self._ready,
            hooks=self._hooks(),
        )

    def _hooks(self) -> HookContext | None:
        """The relays' webhooks whose secrets are configured (None: no /hooks routes)."""
        settings = self.settings
        providers = webhook_providers(settings.bounces, bounce_address=settings.bounce_address)
        if not providers:
            return None
        recorder = recorder_for(self.db, settings)
        return HookContext(providers=providers, record=hook_recorder(recorder, self.clock))

    def admin_context(self) -> AdminContext:
        dashboard = DashboardContext(
            users_file=self.settings.admin.users_file,
            secret=secret_key(self.settings),
            templates=self.settings.templates,
            snapshot=lambda: self.snapshot,
            clock=self.clock,
            alerts=self.ledger,
            store=self.store,
            db=self.db,
            health=self.health.report,
            send_mail=self.transport.send,
            config_path=self.settings.config,
            check_config=lambda: load_snapshot(self.settings),
            secure_cookies=self.settings.admin.secure_cookies,
        )
        return AdminContext(
            ready=self.health.ready,
            health=self.health.report,
            metrics=self.metrics.render,
            dashboard=dashboard,
        )

    def _tick_error_report(self) -> dict[str, str] | None:
        error = self.last_tick_error
        if error is None:
            return None
        return {"at": error.at.isoformat(), "wake_up": error.reason, "error": error.error}

    async def _ready(self) -> bool:
        ok, _ = await self.health.ready()
        return ok

    # -- life cycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Migrate, catch up, schedule, and start the sender, watcher and web server."""
        # bind first: a taken port must fail before anything is fired or sent
        socks = None
        if self._web:
            http, admin = self.settings.http, self.settings.admin
            socks = listen(http.host, http.port), listen(admin.host, admin.port, setting="ADMIN")
        await self.db.upgrade()
        self._migrated = True
        if isinstance(self.transport, MaildirTransport):
            logger.warning(
                "no SMTP host configured (CAMPAIGNBOT_SMTP__HOST): writing mail to Maildir %s",
                self.settings.maildir,
                extra={"action": "maildir_outbox"},
            )
        await self._apply_changes()
        await self.tick("start-up")
        self.scheduler.sync(self._planned(), now=self.clock())
        self.scheduler.start()
        self._tasks.append(asyncio.create_task(self.sender.run(self._stop), name="sender"))
        if self.bounces.configured:
            self._tasks.append(asyncio.create_task(self.bounces.run(self._stop), name="bounces"))
        self._tasks.append(asyncio.create_task(self._reloader(), name="reloader"))
        if self._watch_files:
            self._tasks.append(asyncio.create_task(self._watch(), name="watcher"))
        if socks is not None:
            self._serve(create_app(self.web_context()), socks[0], "web")
            self._serve(create_admin_app(self.admin_context()), socks[1], "admin")
        self.started_at = self.clock()
        nxt = self.scheduler.next_due()
        logger.info(
            "campaignbot %s started: config %s (%d events), database %s, transport %s, "
            "web %s, admin %s, next alert %s",
            __version__,
            self.settings.config,
            len(self.campaign.events),
            self.db.display_url,
            self.transport.description,
            self.web_address if self._web else "off",
            self.admin_address if self._web else "off",
            f"{nxt[0]} at {nxt[1]:%Y-%m-%dT%H:%MZ}" if nxt else "none",
            extra={"action": "service_started"},
        )

    @property
    def web_address(self) -> str:
        return f"http://{self.settings.http.host}:{self.settings.http.port}"

    @property
    def admin_address(self) -> str:
        return f"http://{self.settings.admin.host}:{self.settings.admin.port}"

    def _serve(self, app: Starlette, sock: socket.socket, name: str) -> None:
        import uvicorn

        class _EmbeddedServer(uvicorn.Server):
            # The service owns the signals: uvicorn would replace our handlers and
            # re-raise the signal after its shutdown, which reads as a second SIGTERM.
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            # X-Forwarded-For is read by the app, from CAMPAIGNBOT_HTTP__TRUSTED_PROXIES only
            proxy_headers=False,
        )
        server = _EmbeddedServer(config)
        self._web_servers.append(server)
        self._tasks.append(asyncio.create_task(server.serve([sock]), name=name))

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set."""
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception():
                waiter.cancel()
                raise task.exception()  # type: ignore[misc]
        waiter.cancel()

    async def stop(self, *, timeout_s: float = 8) -> None:
        """Stop taking work, let in-flight sends finish, release the rest, exit."""
        self.scheduler.shutdown()
        self._stop.set()
        for server in self._web_servers:
            server.should_exit = True
        pending: set[asyncio.Task[Any]] = set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with suppress(asyncio.CancelledError, Exception):
                await task
        released = await self.ledger.release(now=self.clock()) if self._migrated else 0
        await self.transport.aclose()
        await self.db.dispose()
        logger.info(
            "campaignbot stopped (%d deliveries released)",
            released,
            extra={"action": "service_stopped", "released": released},
        )

    # -- decisions -------------------------------------------------------------------

    def _planned(self) -> tuple[PlannedAlert, ...]:
        return self.snapshot.plan

    async def fire_due(self) -> None:
        """Fire whatever is due now (tests and callers outside a wake-up)."""
        await self.tick("fire_due")

    async def tick(self, reason: str) -> None:
        """The one way to fire: every wake-up calls this; it never raises.

        A failure (the database, a bug) is logged with the wake-up that met it and kept
        in `last_tick_error` for /healthz; the next wake-up (at most the 30 s reconcile
        tick) tries again, and the ledger makes a repeated firing add nothing.
        """
        async with self._fire_lock:
            now = self.clock()
            try:
                await self._tick(now)
            except Exception as err:
                self.last_tick_error = TickError(now, reason, f"{type(err).__name__}: {err}")
                logger.exception(
                    "tick (%s) failed: %s; retried at the next wake-up",
                    reason,
                    self.last_tick_error.error,
                    extra={"action": "tick_failed", "reason": reason},
                )
            else:
                self.last_tick_error = None

    async def _tick(self, now: datetime) -> None:
        campaign = self.campaign
        info = campaign.campaign
        events = {e.id: e for e in campaign.events}
        starts = {e.id: event_start(e, info.send_at) for e in campaign.events}
        plan = self._planned()
        due = [a for a in plan if a.due_utc <= now]
        since, self._fire_checked_at = self._fire_checked_at, now
        done = await self.events.fired_keys(a.key for a in due) if due else set()
        # Several processes: another one may have fired an alert that just fell due
        # (before we looked, or concurrently, our insert then doing nothing). Its
        # deliveries are ours to share too, so the sender wakes instead of polling.
        fired = any(a.key in done for a in due if since is None or a.due_utc > since)
        skipped: dict[SkipReason, int] = {}
        for action in due_actions(plan, starts, done, now=now, catch_up=info.catch_up_duration):
            alert = action.alert
            if isinstance(action, Fire):
                event = events[alert.event_id]
                result = await self.ledger.fire_alert(
                    alert, audience_clause(event.audience), now=now
                )
                # the ledger logs the firing
                fired = fired or result.created or result.deliveries > 0
            else:
                result = await self.ledger.skip_alert(
                    alert, now=now, reason=f"{action.reason}: {action.detail}", kind=action.reason
                )
                if result.created:
                    skipped[action.reason] = skipped.get(action.reason, 0) + 1
        for why, count in sorted(skipped.items()):
            logger.info(
                "%d reminders recorded as skipped (%s; see `campaignbot status`)",
                count,
                why,
                extra={"action": "alerts_skipped", "count": count, "reason": str(why)},
            )
        await self._sweep_stale(plan, starts, now)
        if fired:
            self.sender.wake()

    async def _sweep_stale(
        self, plan: tuple[PlannedAlert, ...], starts: dict[str, datetime], now: datetime
    ) -> None:
        """Open deliveries of started events become skipped (stale), whatever woke us."""
        stale_after = self.campaign.campaign.stale_after_duration
        planned_zero = {a.event_id: a for a in plan if a.reminder == "0"}
        started = [e for e, start in starts.items() if start <= now]
        expired = [
            e
            for e in started
            if now >= max(starts[e] + stale_after, _window(planned_zero.get(e), starts[e]))
        ]
        await self.ledger.skip_stale(started, expired, now=now)

    async def _apply_changes(self) -> None:
        """Record event versions; notify subscribers already alerted of a changed event."""
        now = self.clock()
        changes = await self.events.record(
            self.campaign.events, send_at=self.campaign.campaign.send_at, now=now
        )
        known = {e.id for e in self.campaign.events}
        for change in changes:
            removed = change.event_id not in known
            if not await self.ledger.event_has_sent(change.event_id):
                if removed:
                    logger.info(
                        "event %s was removed from the config: its reminders stop",
                        change.event_id,
                        extra={"action": "event_removed", "event": change.event_id},
                    )
                continue
            result = await self.ledger.fire_notice(
                change.event_id,
                change=change.change,
                sequence=change.sequence,
                now=now,
                previous_when=change.previous,
            )
            logger.info(
                "event %s %s%s: notice to %d subscribers",
                change.event_id,
                change.change,
                " (removed from the config)" if removed else "",
                result.deliveries,
                extra={
                    "action": "notice_fired",
                    "event": change.event_id,
                    "change": change.change,
                    "deliveries": result.deliveries,
                },
            )
            self.sender.wake()

    # -- reload --------------------------------------------------------------------

    async def reload(self, reason: str) -> bool:
        """Validate the new config first; apply it only when it is entirely valid."""
        async with self._reload_lock:
            return await self._reload(reason)

    async def _reload(self, reason: str) -> bool:
        try:
            snapshot = load_snapshot(self.settings)
        except InvalidInputError as err:
            for line in str(err).splitlines():
                logger.error("%s", line, extra={"action": "reload_rejected", "reason": reason})
            logger.error(
                "config not reloaded (%s): the running schedule is unchanged",
                reason,
                extra={"action": "reload_rejected"},
            )
            return False
        self.snapshot = snapshot
        result = self.scheduler.sync(self._planned(), now=self.clock())
        try:
            await self._apply_changes()
        except Exception:
            # the new config is in force; notices are retried at the next reload or restart
            logger.exception(
                "config reloaded (%s) but change notices could not be recorded",
                reason,
                extra={"action": "reload_changes_failed"},
            )
        await self.tick(f"reload: {reason}")
        logger.info(
            "config reloaded (%s): %d events; jobs +%d ~%d -%d",
            reason,
            len(snapshot.campaign.events),
            result.added,
            result.moved,
            result.removed,
            extra={"action": "config_reloaded"},
        )
        return True

    def request_reload(self, reason: str) -> None:
        """From a signal handler: reload soon, in the loop (the reloader task awaits it)."""
        self._reload_requests.put_nowait(reason)

    async def _reloader(self) -> None:
        """Applies reload requests one at a time; a failure is logged, never lost."""
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                request = asyncio.ensure_future(self._reload_requests.get())
                await asyncio.wait([request, stopping], return_when=asyncio.FIRST_COMPLETED)
                if not request.done():
                    request.cancel()
                    break
                await self._safe_reload(request.result())
        finally:
            stopping.cancel()

    async def _safe_reload(self, reason: str) -> None:
        try:
            await self.reload(reason)
        except Exception:
            logger.exception(
                "config reload (%s) failed; the service keeps running",
                reason,
                extra={"action": "reload_failed", "reason": reason},
            )

    async def _watch(self) -> None:
        from watchfiles import awatch

        paths = [p for p in (self.settings.config, self.settings.templates) if p.exists()]
        # watch the config's folder: editors replace files by renaming over them
        watched = {str(p.parent if p.is_file() else p) for p in paths}
        config = self.settings.config.resolve()
        templates = self.settings.templates.resolve()
        async for changes in awatch(*watched, stop_event=self._stop, debounce=200, step=50):
            # watchfiles reports absolute paths of the folders it was given
            touched = [path for _, path in changes]
            if any(p == str(config) or p.startswith(str(templates) + os.sep) for p in touched):
                await self._safe_reload("file changed")
