"""Composition root: builds everything from Settings and runs the service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from babel.dates import format_timedelta
from starlette.applications import Starlette

from campaignbot import __version__
from campaignbot.campaign.model import Campaign
from campaignbot.campaign.planning import PlannedAlert, may_fire_late
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


class Service:
    """Scheduler, sender and web server over one database and one transport.

    The ledger decides, not the scheduler: every wake-up (a date job, the reconcile
    tick, a reload) calls `fire_due`, which fires whatever is due and not yet in the
    ledger, or records it as skipped when it is too late.
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
        self.scheduler = AlertScheduler(self.fire_due)
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
        #: when `fire_due` last looked; alerts due since then are news to this process
        self._fire_checked_at: datetime | None = None
        # a file change and a SIGHUP may arrive together: apply one reload at a time
        self._reload_lock = asyncio.Lock()
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
        await self.fire_due()
        self.scheduler.sync(self._planned(), now=self.clock())
        self.scheduler.start()
        self._tasks.append(asyncio.create_task(self.sender.run(self._stop), name="sender"))
        if self.bounces.configured:
            self._tasks.append(asyncio.create_task(self.bounces.run(self._stop), name="bounces"))
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
        """Fire every due alert not yet in the ledger; too late ones are recorded skipped."""
        async with self._fire_lock:
            now = self.clock()
            campaign = self.campaign
            due = [a for a in self._planned() if a.due_utc <= now]
            since, self._fire_checked_at = self._fire_checked_at, now
            if not due:
                return
            done = await self.events.fired_keys(a.key for a in due)
            # Several processes: another one may have fired an alert that just fell due
            # (before we looked, or concurrently, our insert then doing nothing). Its
            # deliveries are ours to share too, so the sender wakes instead of polling.
            fired = any(a.key in done for a in due if since is None or a.due_utc > since)
            skipped = 0
            info = campaign.campaign
            for alert in due:
                if alert.key in done:
                    continue
                event = campaign.event(alert.event_id)
                if may_fire_late(
                    alert, event, now=now, catch_up=info.catch_up_duration, send_at=info.send_at
                ):
                    result = await self.ledger.fire_alert(
                        alert, audience_clause(event.audience), now=now
                    )
                    # the ledger logs the firing
                    fired = fired or result.created or result.deliveries > 0
                else:
                    late = format_timedelta(now - alert.due_utc, locale="en")
                    result = await self.ledger.skip_alert(
                        alert, now=now, reason=f"missed by {late} (beyond catch_up)"
                    )
                    skipped += result.created
            if skipped:
                logger.info(
                    "%d reminders missed beyond catch_up or after their event were recorded as "
                    "skipped (see `campaignbot status`)",
                    skipped,
                    extra={"action": "alerts_skipped", "count": skipped},
                )
            if fired:
                self.sender.wake()

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
        await self._apply_changes()
        result = self.scheduler.sync(self._planned(), now=self.clock())
        await self.fire_due()
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
        """From a signal handler: reload soon, in the loop."""
        self._tasks.append(asyncio.create_task(self.reload(reason)))

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
                await self.reload("file changed")
