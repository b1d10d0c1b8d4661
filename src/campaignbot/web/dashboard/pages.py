"""The organizer dashboard under `/admin`: login, timeline, alert detail, subscribers, health.

Server-rendered from sandboxed, autoescaped Jinja templates (`templates/admin/`); no
JavaScript. Every page needs a session; every POST checks the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta
from typing import Any
from urllib.parse import urlencode

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from campaignbot.errors import CampaignbotError, ConfigError, InvalidInputError
from campaignbot.subscribers.model import (
    Subscriber,
    SubscriberInput,
    SubscriberStatus,
    csv_row,
    spreadsheet_safe,
)
from campaignbot.web.app import SecurityHeaders
from campaignbot.web.dashboard import charts, queries
from campaignbot.web.dashboard.accounts import AccountsFile
from campaignbot.web.dashboard.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    LoginLimiter,
    Session,
    Sessions,
)
from campaignbot.web.dashboard.campaign_page import campaign_view
from campaignbot.web.dashboard.context import DashboardContext
from campaignbot.web.dashboard.test_send import send_test

logger = logging.getLogger(__name__)

PREFIX = "/admin"
TIMELINE_DAYS = 30
#: delivery states shown as progress bars, in this order
BAR_STATES = ("sent", "pending", "sending", "retry", "uncertain", "failed", "bounced", "skipped")
CSV_HEADER = ["email", "name", "locale", "timezone", "countries", "topics"]

Handler = Callable[[Request, Session], Awaitable[Response]]


class Dashboard:
    """The page handlers over one DashboardContext."""

    def __init__(self, ctx: DashboardContext, limiter: LoginLimiter | None = None) -> None:
        self.ctx = ctx
        folder = ctx.templates / "admin"
        if not (folder / "base.html.j2").is_file():
            raise ConfigError(f"{folder}: dashboard templates not found (CAMPAIGNBOT_TEMPLATES)")
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(folder),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.stylesheet = (folder / "admin.css").read_bytes()
        self.sessions = Sessions(ctx.secret)
        self.limiter = limiter or LoginLimiter()
        self.accounts = AccountsFile(ctx.users_file)

    # -- plumbing ----------------------------------------------------------------------

    def render(
        self,
        name: str,
        request: Request,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """A page from `templates/admin/`, never cached."""
        html = self.env.get_template(name).render(
            {
                "user": session.user if session else None,
                "csrf": session.csrf if session else "",
                "path": request.url.path,
                "prefix": PREFIX,
                **context,
            }
        )
        return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})

    def session(self, request: Request) -> Session | None:
        """The valid session of this request, else None."""
        session = self.sessions.read(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        # a removed user or a new password ends the session
        if self.accounts.load().session_stamp(session.user) != session.stamp:
            return None
        return session

    def protected(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Needs a session; a POST also needs the session's CSRF token."""

        async def endpoint(request: Request) -> Response:
            session = self.session(request)
            if request.method == "POST":
                form = await request.form()
                token = str(form.get("csrf_token", ""))
                if session is None or not token or token != session.csrf:
                    return HTMLResponse("Forbidden: log in again and resend the form.", 403)
            elif session is None:
                return RedirectResponse(f"{PREFIX}/login", status_code=303)
            return await handler(request, session)

        return endpoint

    def _back(self, path: str, **params: str) -> RedirectResponse:
        query = urlencode(params)
        return RedirectResponse(f"{PREFIX}{path}" + (f"?{query}" if query else ""), status_code=303)

    # -- login ---------------------------------------------------------------------------

    async def login_form(
        self, request: Request, error: str | None = None, status: int = 200
    ) -> Response:
        """The login form with a fresh CSRF value and its signed cookie."""
        cookie, value = self.sessions.login_token()
        response = self.render(
            "login.html.j2", request, None, status, login_csrf=value, error=error
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            cookie,
            max_age=3600,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=self.ctx.secure_cookies,
        )
        return response

    async def login_page(self, request: Request) -> Response:
        """`GET /admin/login`."""
        if self.session(request):
            return self._back("/timeline")
        return await self.login_form(request)

    async def login(self, request: Request) -> Response:
        """`POST /admin/login`: rate limited, CSRF-checked, argon2-verified."""
        form = await request.form()
        user, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        if not self.sessions.login_token_ok(
            request.cookies.get(LOGIN_CSRF_COOKIE), str(form.get("csrf_token", ""))
        ):
            return await self.login_form(request, "The form expired. Please try again.", 403)
        now = self.ctx.clock()
        client = request.client.host if request.client else "unknown"
        keys = [f"ip:{client}", f"user:{user.lower()}"]
        wait = self.limiter.retry_after_s(keys, now=now)
        if wait:
            response = await self.login_form(
                request, f"Too many failed logins. Try again in {wait // 60 + 1} minutes.", 429
            )
            response.headers["retry-after"] = str(wait)
            return response
        accounts = self.accounts.load()
        stamp = accounts.session_stamp(user)
        # argon2 is slow on purpose: keep it off the event loop
        verified = await asyncio.to_thread(accounts.verify_password, user, password)
        if not verified or stamp is None:
            self.limiter.failed(keys, now=now)
            logger.warning(
                "admin: failed login for %r from %s",
                user,
                client,
                extra={"action": "admin_login_failed", "client": client},
            )
            return await self.login_form(request, "Wrong user name or password.", 401)
        self.limiter.succeeded(f"user:{user.lower()}")
        cookie, _ = self.sessions.issue(user, stamp)
        logger.info("admin: %s logged in", user, extra={"action": "admin_login", "user": user})
        response = self._back("/timeline")
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=SESSION_MAX_AGE_S,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=self.ctx.secure_cookies,
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        """`POST /admin/logout`."""
        response = self._back("/login")
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    # -- pages ---------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        """`GET /admin/`: to the timeline, or the login."""
        return self._back("/timeline" if self.session(request) else "/login")

    async def timeline(self, request: Request, session: Session) -> Response:
        """`GET /admin/timeline`: alerts due in the next 30 days, audience by locale."""
        snapshot, now = self.ctx.snapshot(), self.ctx.clock()
        end = now + timedelta(days=TIMELINE_DAYS)
        campaign = snapshot.campaign
        default = campaign.campaign.default_locale
        rows: list[dict[str, Any]] = []
        audiences: dict[str, dict[str, int]] = {}
        for alert in snapshot.plan:
            if not now <= alert.due_utc < end:
                continue
            event = campaign.event(alert.event_id)
            if event.id not in audiences:
                audiences[event.id] = await queries.audience_by_locale(self.ctx.db, event.audience)
            by_locale = audiences[event.id]
            rows.append(
                {
                    "key": alert.key,
                    "event": event.title_for(default, default),
                    "event_id": event.id,
                    "reminder": alert.reminder,
                    "due_utc": alert.due_utc,
                    "due_local": alert.due_local,
                    "audience": sum(by_locale.values()),
                    "by_locale": by_locale,
                }
            )
        axis = charts.timeline_axis(
            [(r["due_utc"], f"{r['event']} ({r['reminder']})") for r in rows], start=now, end=end
        )
        return self.render(
            "timeline.html.j2", request, session, rows=rows, axis=axis, now=now, days=TIMELINE_DAYS
        )

    async def alerts(self, request: Request, session: Session) -> Response:
        """`GET /admin/alerts`: every alert in the ledger."""
        summary = await self.ctx.alerts.status_summary(now=self.ctx.clock())
        lines = sorted(summary.alerts, key=lambda a: a.due, reverse=True)
        return self.render("alerts.html.j2", request, session, alerts=lines)

    async def alert(self, request: Request, session: Session) -> Response:
        """`GET /admin/alerts/{key}`: progress bars, throughput, failures; an alert not
        fired yet shows when it is due; both offer "send a test to me"."""
        key = request.path_params["key"]
        detail = await queries.alert_detail(self.ctx.db, key, now=self.ctx.clock())
        snapshot = self.ctx.snapshot()
        planned = next((a for a in snapshot.plan if a.key == key), None)
        if detail is None and planned is None:
            return self.render("missing.html.j2", request, session, 404, what=f"alert {key}")
        campaign = snapshot.campaign
        default = campaign.campaign.default_locale
        event_id = detail.event_id if detail else planned.event_id if planned else ""
        title = next(
            (e.title_for(default, default) for e in campaign.events if e.id == event_id), event_id
        )
        counts = detail.counts if detail else {}
        states = [s for s in BAR_STATES if s in counts] + sorted(
            s for s in counts if s not in BAR_STATES
        )
        return self.render(
            "alert.html.j2",
            request,
            session,
            key=key,
            alert=detail,
            planned=planned,
            title=title,
            states=states,
            sent_to=request.query_params.get("sent", ""),
            test_error="",
        )

    async def test(self, request: Request, session: Session) -> Response:
        """`POST /admin/alerts/{key}/test`: one test message to the given address."""
        key = request.path_params["key"]
        form = await request.form()
        try:
            to = await send_test(self.ctx, key, str(form.get("email", "")), user=session.user)
        except InvalidInputError as err:
            return self._test_failed(request, session, key, str(err), 400)
        except CampaignbotError as err:
            return self._test_failed(request, session, key, str(err), 502)
        return self._back(f"/alerts/{key}", sent=to)

    def _test_failed(
        self, request: Request, session: Session, key: str, error: str, status: int
    ) -> Response:
        snapshot = self.ctx.snapshot()
        planned = next((a for a in snapshot.plan if a.key == key), None)
        if planned is None:
            return self.render("missing.html.j2", request, session, 404, what=f"alert {key}")
        default = snapshot.campaign.campaign.default_locale
        title = snapshot.campaign.event(planned.event_id).title_for(default, default)
        return self.render(
            "alert.html.j2",
            request,
            session,
            status,
            key=key,
            alert=None,
            planned=planned,
            title=title,
            states=[],
            sent_to="",
            test_error=error,
        )

    async def subscribers(self, request: Request, session: Session) -> Response:
        """`GET /admin/subscribers`: counts, growth, search."""
        q = request.query_params.get("q", "").strip()[:320]
        now = self.ctx.clock()
        found = []
        for email in await queries.search_addresses(self.ctx.db, q) if q else []:
            subscriber = await self.ctx.store.get_by_email(email)
            if subscriber is not None:
                found.append(subscriber)
        return self.render(
            "subscribers.html.j2",
            request,
            session,
            breakdown=await queries.breakdown(self.ctx.db),
            chart=charts.growth_chart(await queries.growth(self.ctx.db, now=now)),
            q=q,
            found=found,
            done=request.query_params.get("done", ""),
        )

    async def _subscriber_in_form(self, request: Request) -> tuple[str, Subscriber | None]:
        form = await request.form()
        email = str(form.get("email", "")).strip()
        return email, await self.ctx.store.get_by_email(email) if email else None

    async def suppress(self, request: Request, session: Session) -> Response:
        """`POST /admin/subscribers/suppress`: do-not-contact, like `subscribers suppress`
        (the record stays; imports and sign-ups cannot re-add it)."""
        email, subscriber = await self._subscriber_in_form(request)
        if subscriber is None:
            return self.render("missing.html.j2", request, session, 404, what=f"subscriber {email}")
        entry = SubscriberInput.create(
            subscriber.email, locale=subscriber.locale, timezone=subscriber.timezone
        )
        reason = f"dashboard ({session.user})"
        await self.ctx.store.suppress(entry, reason=reason, now=self.ctx.clock())
        logger.info(
            "admin: %s suppressed %s",
            session.user,
            subscriber.email,
            extra={"action": "admin_suppressed", "user": session.user},
        )
        return self._back("/subscribers", q=subscriber.email, done="suppressed")

    async def unsuppress(self, request: Request, session: Session) -> Response:
        """`POST /admin/subscribers/unsuppress`: like `subscribers unsuppress`."""
        email, subscriber = await self._subscriber_in_form(request)
        if subscriber is None:
            return self.render("missing.html.j2", request, session, 404, what=f"subscriber {email}")
        if await self.ctx.store.unsuppress(subscriber.email, now=self.ctx.clock()) is not None:
            logger.info(
                "admin: %s lifted the suppression of %s",
                session.user,
                subscriber.email,
                extra={"action": "admin_unsuppressed", "user": session.user},
            )
        return self._back("/subscribers", q=subscriber.email, done="unsuppressed")

    async def export(self, request: Request, session: Session) -> Response:
        """`GET /admin/subscribers/export.csv`: active subscribers, spreadsheet-safe."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        async for subscriber in self.ctx.store.iterate(status=SubscriberStatus.ACTIVE):
            # spreadsheet-safe, as `subscribers export`: no cell is read as a formula
            writer.writerow([spreadsheet_safe(c) for c in csv_row(subscriber)])
        stamp = self.ctx.clock().astimezone(UTC).strftime("%Y%m%d")
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={
                "content-disposition": f'attachment; filename="subscribers-{stamp}.csv"',
                "cache-control": "no-store",
            },
        )

    async def campaign(self, request: Request, session: Session) -> Response:
        """`GET /admin/campaign`: the running campaign and the file on disk."""
        view = await campaign_view(self.ctx)
        return self.render("campaign.html.j2", request, session, **view)

    async def health(self, request: Request, session: Session) -> Response:
        """`GET /admin/health`: what `/healthz` reports."""
        ok, report = await self.ctx.health()
        return self.render("health.html.j2", request, session, ok=ok, report=report)

    async def css(self, request: Request) -> Response:
        """The dashboard stylesheet (no inline styles: the CSP forbids them)."""
        return Response(self.stylesheet, media_type="text/css; charset=utf-8")


def create_dashboard_app(
    ctx: DashboardContext, *, limiter: LoginLimiter | None = None
) -> Starlette:
    """The `/admin` app (mounted by the admin listener).

    A template folder without `admin/` (made before the dashboard existed) must not
    stop the service: `/admin` then answers 503 naming the folder, the API still works.
    """
    try:
        d = Dashboard(ctx, limiter)
    except ConfigError as err:
        logger.warning("dashboard off: %s", err, extra={"action": "dashboard_off"})
        message = f"{err}: copy templates/admin/ from campaignbot's sources there"

        async def unavailable(request: Request) -> Response:
            return PlainTextResponse(message, status_code=503)

        return Starlette(routes=[Route("/{path:path}", unavailable, methods=["GET", "POST"])])
    p = d.protected
    routes = [
        Route("/", d.index, methods=["GET"]),
        Route("/login", d.login_page, methods=["GET"]),
        Route("/login", d.login, methods=["POST"]),
        Route("/logout", p(d.logout), methods=["POST"]),
        Route("/timeline", p(d.timeline), methods=["GET"]),
        Route("/alerts", p(d.alerts), methods=["GET"]),
        Route("/alerts/{key}/test", p(d.test), methods=["POST"]),
        Route("/alerts/{key}", p(d.alert), methods=["GET"]),
        Route("/subscribers", p(d.subscribers), methods=["GET"]),
        Route("/subscribers/suppress", p(d.suppress), methods=["POST"]),
        Route("/subscribers/unsuppress", p(d.unsuppress), methods=["POST"]),
        Route("/subscribers/export.csv", p(d.export), methods=["GET"]),
        Route("/campaign", p(d.campaign), methods=["GET"]),
        Route("/health", p(d.health), methods=["GET"]),
        Route("/static/admin.css", d.css, methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
