"""The public web app: events and sign-up, the privacy notice, the calendar feed, and a
minimal /healthz for a load balancer. Server-rendered, sandboxed Jinja2 pages; no
JavaScript needed.

Around it: links.py (the pages behind email links), middleware.py (security headers,
Host check, client address behind trusted proxies), signups.py (the confirmation mails),
pages.py (templates and catalogs). Forms carry a CSRF token; a sign-up is one INSERT
and the same answer for any address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from campaignbot.email.calendar import feed_ics
from campaignbot.email.snapshot import Snapshot
from campaignbot.email.tokens import ROUTES, LinkToken
from campaignbot.errors import CampaignbotError, StoreError, TokenError, TokenReason
from campaignbot.settings import Settings, secret_key
from campaignbot.subscribers.model import SubscriberStatus
from campaignbot.subscribers.signups import SignupStore
from campaignbot.subscribers.store import SubscriberStore
from campaignbot.web import forms
from campaignbot.web.hooks import HookContext, hook_routes
from campaignbot.web.links import CSRF_COOKIE, LinkPages
from campaignbot.web.middleware import (
    SECURITY_HEADERS,
    BodyLimit,
    HostCheck,
    SecurityHeaders,
    client_address,
    is_loopback_url,
    parse_networks,
    public_host,
    rate_key,
)
from campaignbot.web.pages import Pages
from campaignbot.web.signups import drain_signup_outbox

logger = logging.getLogger(__name__)

#: pages whose GET shows the same thing in another language (the language links)
_SWITCHABLE = frozenset({"/", "/confirm", "/unsubscribe", "/preferences", "/privacy"})
MAX_BODY_BYTES = 64 * 1024
#: how often the app sends confirmation mails still owed (besides after each sign-up)
DRAIN_EVERY_S = 60.0


def listen(host: str, port: int, *, setting: str = "HTTP") -> socket.socket:
    """The web server's listening socket, bound here so a taken port is a clear error
    (uvicorn would call sys.exit inside the event loop)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as err:
        raise CampaignbotError(f"{host}:{port}: cannot listen: {err}") from err
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise CampaignbotError(
            f"{host}:{port}: cannot listen: {err.strerror or err}",
            hint=f"another program uses that port: set CAMPAIGNBOT_{setting}__PORT",
        ) from err
    sock.setblocking(False)
    return sock


class MailSender(Protocol):
    """The transport's `send`: hands one message to SMTP or the Maildir."""

    async def __call__(self, message: EmailMessage, *, sender: str, recipient: str) -> str: ...


@dataclass(frozen=True)
class WebContext:
    """What the public pages use: the current snapshot and a few ports, never the service."""

    settings: Settings
    #: read per request, so a config reload shows at once
    snapshot: Callable[[], Snapshot]
    store: SubscriberStore
    clock: Callable[[], datetime]
    send_mail: MailSender
    #: each event's calendar SEQUENCE (how often it changed)
    sequences: Callable[[], Awaitable[dict[str, int]]]
    #: database reachable and a valid campaign loaded
    ready: Callable[[], Awaitable[bool]]
    #: the relays' bounce and complaint webhooks (`POST /hooks/<provider>`), if any
    hooks: HookContext | None = None


class Web:
    """The request handlers over one WebContext."""

    def __init__(
        self, ctx: WebContext, *, subscribe_limit: tuple[int, float], drain_signups: bool = True
    ) -> None:
        self.ctx = ctx
        info = ctx.snapshot().campaign.campaign
        self.pages = Pages(ctx.settings.templates / "web", info.default_locale)
        self.csrf = forms.CsrfTokens(secret_key(ctx.settings))
        self.limiter = forms.RateLimit(*subscribe_limit)
        self.timezones = forms.timezones()
        self.tasks: set[asyncio.Task[None]] = set()
        self.signups = SignupStore(ctx.store.database)
        self.trusted = parse_networks(ctx.settings.http.trusted_proxies)
        #: cookies get `Secure` whenever the public URL is https, whatever a proxy says
        self.https = ctx.settings.public_url.startswith("https://")
        self.drain_signups = drain_signups
        self._draining = asyncio.Lock()

    # -- shared page parts ---------------------------------------------------------

    @property
    def locales(self) -> list[str]:
        """Languages the pages and the campaign both speak, default first."""
        found = [loc for loc in self.ctx.snapshot().campaign.locales if loc in self.pages.catalogs]
        return found or [self.pages.fallback]

    def lang(self, request: Request, preferred: str | None = None) -> str:
        """`?lang=`, else the subscriber's language, else Accept-Language, else default."""
        default = self.ctx.snapshot().campaign.campaign.default_locale
        header = request.headers.get("accept-language", "")
        if preferred and not request.query_params.get("lang"):
            header = f"{preferred},{header}"
        return forms.choose_locale(request.query_params.get("lang"), header, self.locales, default)

    def _languages(self, request: Request) -> list[tuple[str, str, str]]:
        # only our own pages: a path like "//elsewhere.example" must not become a link
        path = request.url.path if request.url.path in _SWITCHABLE else "/"
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
        return [
            (code, forms.native_name(code), f"{path}?{urlencode([*query, ('lang', code)])}")
            for code in self.locales
        ]

    def page(
        self, request: Request, lang: str, name: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        t = self.pages.catalog(lang)
        info = self.ctx.snapshot().campaign.campaign
        sender = info.sender_address.display_name or info.name
        html = self.pages.render(
            name,
            {
                "lang": lang,
                "t": t,
                "campaign_name": info.name,
                "footer_text": forms.fill(t["footer"], sender=sender),
                "languages": self._languages(request),
                "errors": {},
                **context,
            },
        )
        response = HTMLResponse(html, status_code=status)
        if request.query_params.get("t"):
            response.headers["cache-control"] = "no-store"
        return response

    def message(
        self,
        request: Request,
        lang: str,
        title: str,
        paragraphs: list[str],
        *,
        status: int = 200,
        links: list[tuple[str, str]] | None = None,
        tone: str = "",
    ) -> HTMLResponse:
        t = self.pages.catalog(lang)
        return self.page(
            request,
            lang,
            "message.html.j2",
            status=status,
            title=t[title],
            paragraphs=[t.get(p, p) for p in paragraphs],
            links=links or [],
            tone=tone,
        )

    def bad_link(
        self, request: Request, err: TokenError | None, lang: str, *, used: bool = False
    ) -> HTMLResponse:
        body = "expired_link_body" if err and err.reason is TokenReason.EXPIRED else "bad_link_body"
        if err is None:
            body = (
                self.pages.catalog(lang)["privacy"]["used_link_body"] if used else "gone_link_body"
            )
        home = self.pages.catalog(lang)["back_home"]
        return self.message(
            request,
            lang,
            "bad_link_title",
            [body],
            status=400,
            links=[(home, self.path(request, "home", lang=lang))],
            tone="error",
        )

    def path(self, request: Request, name: str, **query: str) -> str:
        """The path of the route `name` with `query` (pages link to each other by name)."""
        path = str(request.app.url_path_for(name))
        return f"{path}?{urlencode(query)}" if query else path

    def verify(self, request: Request, purpose: str) -> LinkToken:
        """The id and nonce of the `?t=` token (TokenError when it is not ours)."""
        token = request.query_params.get("t", "")
        if not token or len(token) > 500:
            raise TokenError(f"invalid {purpose} link")
        return self.ctx.snapshot().signer.open(token, purpose)

    def client(self, request: Request) -> str:
        """The visitor's address: the TCP peer, or behind a trusted proxy the right-most
        X-Forwarded-For hop that is not one of the trusted proxies."""
        peer = request.client.host if request.client else "unknown"
        return client_address(peer, request.headers.getlist("x-forwarded-for"), self.trusted)

    def _choices(self) -> forms.Choices:
        campaign = self.ctx.snapshot().campaign
        return forms.Choices(
            locales=self.locales,
            countries=campaign.countries,
            topics=campaign.topics,
            default_locale=campaign.campaign.default_locale,
            default_timezone=campaign.campaign.timezone.key,
            timezones=frozenset(self.timezones),
        )

    def _options(self, lang: str) -> dict[str, Any]:
        return forms.form_options(
            self.ctx.snapshot().campaign, self.locales, self.pages.catalog(lang), lang
        )

    async def form(self, request: Request) -> dict[str, list[str]]:
        data = await request.form(max_files=0, max_fields=200, max_part_size=MAX_BODY_BYTES)
        fields: dict[str, list[str]] = {}
        for key, value in data.multi_items():
            if isinstance(value, str):
                fields.setdefault(key, []).append(value)
        return fields

    def csrf_cookie(self, request: Request) -> str:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not (20 <= len(cookie) <= 100 and cookie.isascii()):
            cookie = forms.CsrfTokens.new_cookie()
        return cookie

    def with_csrf(self, request: Request, response: Response, cookie: str) -> Response:
        if request.cookies.get(CSRF_COOKIE) != cookie:
            response.set_cookie(
                CSRF_COOKIE,
                cookie,
                max_age=self.csrf.max_age_s,
                httponly=True,
                samesite="lax",
                secure=self.https,
            )
        return response

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def status_text(self, lang: str, status: SubscriberStatus) -> str:
        return str(self.pages.catalog(lang).get(f"status_{status.value}", status.value))

    # -- home and sign-up ----------------------------------------------------------

    def home_page(
        self,
        request: Request,
        lang: str,
        cookie: str,
        *,
        values: forms.FormValues | None = None,
        errors: forms.FieldErrors | None = None,
        status: int = 200,
    ) -> Response:
        response = self.page(
            request,
            lang,
            "home.html.j2",
            status=status,
            events=forms.event_views(
                self.ctx.snapshot().campaign,
                self.pages.catalog(lang),
                lang,
                now=self.ctx.clock(),
                calendar_path=self.path(request, "calendar"),
            ),
            feed_url=self.path(request, "calendar", lang=lang),
            csrf_token=self.csrf.field(cookie),
            values=values or forms.FormValues(locale=lang),
            errors=errors or {},
            **self._options(lang),
        )
        return self.with_csrf(request, response, cookie)

    async def home(self, request: Request) -> Response:
        return self.home_page(request, self.lang(request), self.csrf_cookie(request))

    async def subscribe(self, request: Request) -> Response:
        """Record the sign-up and answer; the same statements and the same answer for
        any address (the confirmation mail is the drain's business, see signups.py)."""
        lang = self.lang(request)
        wait_s = self.limiter.hit(rate_key(self.client(request)))
        if wait_s is not None:
            response = self.message(request, lang, "rate_title", ["rate_body"], status=429)
            response.headers["retry-after"] = str(max(1, round(wait_s)))
            return response
        fields = await self.form(request)
        cookie = request.cookies.get(CSRF_COOKIE)
        if not self.csrf.check(cookie, (fields.get("csrf_token") or [""])[0]):
            return self.message(request, lang, "csrf_title", ["csrf_body"], status=403)
        assert cookie is not None
        entry, values, errors = forms.parse_subscribe(fields, self._choices())
        if values.locale in self.locales:
            lang = values.locale
        if entry is None:
            return self.home_page(request, lang, cookie, values=values, errors=errors, status=400)
        await self.signups.request(entry, now=self.ctx.clock(), source="web sign-up")
        if self.drain_signups:
            self.spawn(self.drain())
        t = self.pages.catalog(lang)
        return self.message(
            request,
            lang,
            "check_inbox_title",
            [forms.fill(t["check_inbox_body"], email=entry.email), "check_inbox_spam"],
            tone="ok",
        )

    async def drain_every(self, interval_s: float, stop: asyncio.Event) -> None:
        """`drain` now and then every `interval_s` until `stop` is set (real clock)."""
        while not stop.is_set():
            await self.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def drain(self) -> None:
        """Send the confirmation mails owed (after answering; one drain at a time)."""
        snapshot = self.ctx.snapshot()
        renderer = snapshot.renderer
        async with self._draining:
            try:
                await drain_signup_outbox(
                    self.signups,
                    render_confirm=lambda to, now: renderer.render_confirm(to, now=now),
                    sender=snapshot.campaign.campaign.sender_address.addr_spec,
                    send_mail=self.ctx.send_mail,
                    clock=self.ctx.clock,
                )
            except CampaignbotError as err:  # the requests stay; the next drain retries
                logger.warning("sign-ups: %s", err, extra={"action": "signup_drain_failed"})
            except Exception:  # a bug must not go unnoticed in a background task
                logger.exception("sign-ups: drain failed", extra={"action": "signup_drain_failed"})

    # -- feeds and operations --------------------------------------------------------

    async def calendar(self, request: Request) -> Response:
        """All events as iCalendar (cancelled ones too, so calendars drop them).

        Public: the campaign's dates are on the home page anyway. A `?t=` token from
        older emails is ignored, so an old subscription URL tells nothing about anyone.
        """
        lang = self.lang(request)
        campaign = self.ctx.snapshot().campaign
        events = list(campaign.events)
        wanted = request.query_params.get("event")
        if wanted is not None:
            events = [e for e in events if e.id == wanted]
            if not events:
                raise HTTPException(404)
        data = feed_ics(
            events,
            campaign.campaign,
            locale=lang,
            now=self.ctx.clock(),
            sequences=await self.ctx.sequences(),
        )
        name = f"{wanted}.ics" if wanted else "events.ics"
        return Response(
            data,
            media_type="text/calendar; charset=utf-8",
            headers={
                "content-disposition": f'inline; filename="{name}"',
                "cache-control": "max-age=300",
            },
        )

    async def privacy(self, request: Request) -> Response:
        """The privacy notice (GDPR Art. 13): templates/web/privacy.html.j2, localized."""
        info = self.ctx.snapshot().campaign.campaign
        return self.page(
            request,
            self.lang(request),
            "privacy.html.j2",
            controller=info.sender_address.display_name or info.name,
            contact=info.sender_address.addr_spec,
        )

    async def healthz(self, request: Request) -> Response:
        """For a load balancer: a status word only (details are on the admin listener)."""
        ok = await self.ctx.ready()
        return JSONResponse({"status": "ok" if ok else "fail"}, status_code=200 if ok else 503)

    async def stylesheet(self, request: Request) -> Response:
        return Response(
            self.pages.stylesheet,
            media_type="text/css; charset=utf-8",
            headers={"cache-control": "max-age=3600"},
        )

    # -- errors ------------------------------------------------------------------------

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        lang = self.lang(request)
        if exc.status_code in (404, 405):
            response = self.message(
                request, lang, "not_found_title", ["not_found_body"], status=exc.status_code
            )
        else:
            response = self.message(
                request, lang, "error_title", ["error_body"], status=exc.status_code
            )
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    async def store_error(self, request: Request, exc: Exception) -> Response:
        logger.error("web: %s", exc, extra={"action": "web_store_error"})
        return self.message(request, self.lang(request), "error_title", ["error_body"], status=503)


def create_app(
    ctx: WebContext,
    *,
    subscribe_limit: tuple[int, float] = (5, 60.0),
    drain_signups: bool = True,
) -> Starlette:
    """The public Starlette app over `ctx`.

    `subscribe_limit`: sign-ups per client address per window (seconds).
    `drain_signups`: send confirmation mails after answering a sign-up (tests of the
    request alone turn it off; the service drains on its own as well).
    """
    web = Web(ctx, subscribe_limit=subscribe_limit, drain_signups=drain_signups)
    links = LinkPages(web)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # requests left by a crash, and mails a relay outage held back, go out without
        # waiting for the next sign-up
        stop = asyncio.Event()
        periodic = None
        if drain_signups:
            periodic = asyncio.create_task(web.drain_every(DRAIN_EVERY_S, stop))
        yield
        stop.set()  # not cancel: a drain in the middle of a statement finishes first
        if periodic is not None:
            await periodic
        # let confirmation mails being sent finish
        if web.tasks:
            await asyncio.wait(set(web.tasks), timeout=10)

    # Pages link to each other by route name (`Web.path`); the paths of the pages that
    # emails link to are the link purposes' (tokens.ROUTES), so both always agree.
    routes = [
        Route("/", web.home, methods=["GET"], name="home"),
        Route("/subscribe", web.subscribe, methods=["POST"], name="subscribe"),
        Route(ROUTES["confirm"], links.confirm_form, methods=["GET"], name="confirm"),
        Route(ROUTES["confirm"], links.confirm, methods=["POST"], name="confirm_post"),
        Route("/privacy", web.privacy, methods=["GET"], name="privacy"),
        Route(ROUTES["unsubscribe"], links.unsubscribe_form, methods=["GET"], name="unsubscribe"),
        Route(ROUTES["unsubscribe"], links.unsubscribe, methods=["POST"], name="unsubscribe_post"),
        Route(
            ROUTES["preferences"], links.preferences, methods=["GET", "POST"], name="preferences"
        ),
        Route(ROUTES["calendar"], web.calendar, methods=["GET"], name="calendar"),
        Route("/healthz", web.healthz, methods=["GET"], name="healthz"),
        Route("/static/style.css", web.stylesheet, methods=["GET"], name="stylesheet"),
        *(hook_routes(ctx.hooks) if ctx.hooks is not None else []),
    ]
    public = ctx.settings.public_url
    # the body limit inside the headers middleware, so a 413 has the headers too
    middleware = [
        Middleware(SecurityHeaders, hsts=public.startswith("https://")),
        Middleware(BodyLimit, max_body_size=MAX_BODY_BYTES),
    ]
    if public and not is_loopback_url(public):
        # links are built from PUBLIC_URL, never from Host; a request for another name
        # is refused (no cache poisoning through a misrouting proxy). A loopback
        # PUBLIC_URL is a development setup: any local name and port will do there.
        middleware.append(Middleware(HostCheck, allowed=[public_host(public)]))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: web.http_error, StoreError: web.store_error},
        lifespan=lifespan,
    )
    # a trailing-slash redirect would take its Location from the Host header
    app.router.redirect_slashes = False
    app.state.web = web
    return app


# SecurityHeaders: the dashboard apps import it from here
__all__ = ["SECURITY_HEADERS", "SecurityHeaders", "WebContext", "create_app", "listen"]
