"""The JSON API under `/api`, for the organisation's website and CRM (bearer tokens).

Errors are RFC 9457 problem details (`application/problem+json`). A new subscriber
starts the double opt-in (a confirmation mail) unless the token has the
`subscribers:consent` scope and the body says `"confirmed": true`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from campaignbot.errors import InvalidInputError, StoreError
from campaignbot.subscribers.model import (
    Subscriber,
    SubscriberInput,
    SubscriberStatus,
    subscriber_json,
)
from campaignbot.subscribers.signups import SignupStore
from campaignbot.web.app import SecurityHeaders
from campaignbot.web.dashboard import queries
from campaignbot.web.dashboard.accounts import AccountsFile, ApiToken
from campaignbot.web.dashboard.context import DashboardContext
from campaignbot.web.dashboard.openapi import openapi_document
from campaignbot.web.signups import drain_signup_outbox

logger = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
PAGE_SIZE, MAX_PAGE_SIZE = 500, 5000
_PATCHABLE = {"locale", "timezone", "countries", "topics", "follows_all", "status"}
#: statuses a PATCH may set: `suppressed` is the do-not-contact list, `active` lifts it
_PATCH_STATUSES = {"active", "unsubscribed", "suppressed"}

Handler = Callable[[Request, ApiToken], Awaitable[Response]]


class Problem(Exception):
    """An RFC 9457 problem: status, title and a detail for this occurrence."""

    def __init__(self, status: int, title: str, detail: str = "", **headers: str) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.headers = status, title, detail, headers


def problem_response(request: Request, problem: Problem) -> Response:
    """The problem as `application/problem+json` (RFC 9457)."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "instance": request.url.path,
    }
    if problem.detail:
        body["detail"] = problem.detail
    return JSONResponse(body, problem.status, headers=problem.headers, media_type=PROBLEM)


class Api:
    """The API handlers over one DashboardContext."""

    def __init__(self, ctx: DashboardContext) -> None:
        self.ctx = ctx
        self.accounts = AccountsFile(ctx.users_file)

    def scoped(self, scope: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """401 without a valid bearer token, 403 when the token lacks `scope`."""

        async def endpoint(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            kind, _, bearer = header.partition(" ")
            token = (
                self.accounts.load().token_for(bearer.strip()) if kind.lower() == "bearer" else None
            )
            if token is None:
                raise Problem(
                    401,
                    "Unauthorized",
                    "a valid bearer token is required",
                    **{"www-authenticate": 'Bearer realm="campaignbot"'},
                )
            if not token.allows(scope):
                raise Problem(403, "Forbidden", f"this token lacks the {scope} scope")
            return await handler(request, token)

        return endpoint

    async def _body(self, request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise Problem(415, "Unsupported Media Type", "send application/json")
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as err:
            raise Problem(400, "Bad Request", f"body is not JSON: {err}") from None
        if not isinstance(body, dict):
            raise Problem(400, "Bad Request", "body must be a JSON object")
        return body

    async def _subscriber(self, request: Request) -> Subscriber:
        email = request.path_params["email"]
        subscriber = await self.ctx.store.get_by_email(email)
        if subscriber is None:
            raise Problem(404, "Not Found", f"{email}: no such subscriber")
        return subscriber

    # -- alerts --------------------------------------------------------------------------

    async def list_alerts(self, request: Request, token: ApiToken) -> Response:
        """`GET /api/alerts`: ledger alerts with counts, then the scheduled ones ahead."""
        now = self.ctx.clock()
        summary = await self.ctx.alerts.status_summary(now=now)
        fired = {a.key for a in summary.alerts}
        items: list[dict[str, Any]] = [
            {
                "key": a.key,
                "event": a.event,
                "reminder": a.reminder,
                "kind": a.kind,
                "due_utc": a.due.isoformat(),
                "state": a.status,
                "sent": a.sent,
                "pending": a.pending,
                "retry": a.retry,
                "failed": a.failed,
                "uncertain": a.uncertain,
                "skipped": a.skipped,
            }
            for a in summary.alerts
        ]
        items += [
            {
                "key": p.key,
                "event": p.event_id,
                "reminder": p.reminder,
                "kind": "alert",
                "due_utc": p.due_utc.isoformat(),
                "state": "scheduled",
            }
            for p in self.ctx.snapshot().plan
            if p.key not in fired and p.due_utc > now
        ]
        return JSONResponse(items)

    async def get_alert(self, request: Request, token: ApiToken) -> Response:
        """`GET /api/alerts/{key}`: counts by state and the failures."""
        key = request.path_params["key"]
        detail = await queries.alert_detail(self.ctx.db, key, now=self.ctx.clock())
        if detail is None:
            raise Problem(404, "Not Found", f"{key}: no such alert in the ledger")
        return JSONResponse(
            {
                "key": detail.key,
                "event": detail.event_id,
                "reminder": detail.reminder,
                "kind": detail.kind,
                "state": detail.status,
                "due_utc": detail.due.isoformat(),
                "fired_at": detail.fired_at.isoformat(),
                "counts": detail.counts,
                "rate_per_min": detail.rate_per_min,
                "failures": [
                    {
                        "email": f.email,
                        "status": f.status,
                        "code": f.code,
                        "reason": f.reason,
                        "attempts": f.attempts,
                    }
                    for f in detail.failures
                ],
            }
        )

    # -- subscribers ---------------------------------------------------------------------

    async def list_subscribers(self, request: Request, token: ApiToken) -> Response:
        """`GET /api/subscribers[?status=&limit=&offset=]`: one page in sign-up order;
        a `Link: <...>; rel="next"` header names the next page while there is one."""
        raw = request.query_params.get("status")
        try:
            status = SubscriberStatus(raw) if raw else None
        except ValueError:
            raise Problem(400, "Bad Request", f"status {raw!r}: unknown") from None
        limit = self._int_param(request, "limit", PAGE_SIZE, 1, MAX_PAGE_SIZE)
        offset = self._int_param(request, "offset", 0, 0, None)
        page: list[dict[str, Any]] = []
        more = False
        # streamed in id order: a page never holds more than `limit` rows in memory
        async with contextlib.aclosing(self.ctx.store.iterate(status=status)) as rows:
            index = 0
            async for subscriber in rows:
                if index >= offset + limit:
                    more = True
                    break
                if index >= offset:
                    page.append(subscriber_json(subscriber))
                index += 1
        headers = {}
        if more:
            query = urlencode({**request.query_params, "offset": offset + limit, "limit": limit})
            headers["link"] = f'<{request.url.path}?{query}>; rel="next"'
        return JSONResponse(page, headers=headers)

    @staticmethod
    def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise Problem(400, "Bad Request", f"{name} {raw!r}: not a whole number") from None
        if value < low or (high is not None and value > high):
            bounds = f"{low} to {high}" if high is not None else f"at least {low}"
            raise Problem(400, "Bad Request", f"{name} {value}: use {bounds}")
        return value

    async def create_subscriber(self, request: Request, token: ApiToken) -> Response:
        """`POST /api/subscribers`: double opt-in, or active with the consent scope."""
        body = await self._body(request)
        unknown = set(body) - {
            "email",
            "name",
            "locale",
            "timezone",
            "countries",
            "topics",
            "confirmed",
        }
        if unknown:
            raise Problem(
                422, "Unprocessable Content", f"unknown fields: {', '.join(sorted(unknown))}"
            )
        confirmed = body.get("confirmed", False) is True
        if confirmed and not token.allows("subscribers:consent"):
            raise Problem(403, "Forbidden", '"confirmed": true needs the subscribers:consent scope')
        campaign = self.ctx.snapshot().campaign.campaign
        try:
            entry = SubscriberInput.create(
                str(body.get("email", "")),
                name=str(body.get("name", "")),
                locale=str(body.get("locale", campaign.default_locale)),
                timezone=str(body.get("timezone", campaign.timezone.key)),
                countries=list(body.get("countries", [])),
                topics=list(body.get("topics", [])),
            )
        except (ValueError, TypeError) as err:
            raise Problem(422, "Unprocessable Content", str(err)) from None
        now, source = self.ctx.clock(), f"api:{token.name}"
        if confirmed:
            try:
                subscriber = await self.ctx.store.add(entry, now=now, source=source)
            except InvalidInputError as err:
                raise Problem(409, "Conflict", str(err)) from None
            return JSONResponse(subscriber_json(subscriber), 201)
        # the web form's path: a sign-up request, then the drain mails the confirmation
        # (at most one per address per 24 h; nothing changes before it is followed)
        signups = SignupStore(self.ctx.db)
        await signups.request(entry, now=now, source=source)
        snapshot = self.ctx.snapshot()
        renderer = snapshot.renderer
        await drain_signup_outbox(
            signups,
            render_confirm=lambda to, at: renderer.render_confirm(to, now=at),
            sender=snapshot.campaign.campaign.sender_address.addr_spec,
            send_mail=self.ctx.send_mail,
            clock=self.ctx.clock,
        )
        # same answer for known and new addresses: the API does not reveal who is listed
        return JSONResponse({"email": entry.email, "status": "confirmation_sent"}, 202)

    async def get_subscriber(self, request: Request, token: ApiToken) -> Response:
        """`GET /api/subscribers/{email}`."""
        return JSONResponse(subscriber_json(await self._subscriber(request)))

    async def patch_subscriber(self, request: Request, token: ApiToken) -> Response:
        """`PATCH /api/subscribers/{email}`: preferences, suppress, unsuppress."""
        subscriber = await self._subscriber(request)
        body = await self._body(request)
        unknown = set(body) - _PATCHABLE
        if unknown:
            raise Problem(
                422, "Unprocessable Content", f"cannot change: {', '.join(sorted(unknown))}"
            )
        status = body.get("status")
        if status is not None and status not in _PATCH_STATUSES:
            raise Problem(
                422,
                "Unprocessable Content",
                f"status {status!r}: use one of {', '.join(sorted(_PATCH_STATUSES))}",
            )
        if status == "active" and subscriber.status is not SubscriberStatus.SUPPRESSED:
            # activation without proof of consent only lifts a suppression
            raise Problem(422, "Unprocessable Content", "status active: only lifts a suppression")
        now = self.ctx.clock()
        if set(body) - {"status"}:
            try:
                updated = await self.ctx.store.update_preferences(
                    subscriber.id,
                    countries=list(body.get("countries", subscriber.countries)),
                    topics=list(body.get("topics", subscriber.topics)),
                    locale=str(body.get("locale", subscriber.locale)),
                    timezone=str(body.get("timezone", subscriber.timezone)),
                    follows_all=body.get("follows_all")
                    if isinstance(body.get("follows_all"), bool)
                    else None,
                    now=now,
                )
            except (InvalidInputError, TypeError) as err:
                raise Problem(422, "Unprocessable Content", str(err)) from None
            subscriber = updated or subscriber
        store = self.ctx.store
        if status == "suppressed":
            entry = SubscriberInput.create(
                subscriber.email, locale=subscriber.locale, timezone=subscriber.timezone
            )
            subscriber, _ = await store.suppress(entry, reason=f"api ({token.name})", now=now)
        elif status == "active":
            subscriber = await store.unsuppress(subscriber.email, now=now) or subscriber
        elif status is not None:
            changed = await store.set_status(subscriber.id, SubscriberStatus(status), now=now)
            subscriber = changed or subscriber
        return JSONResponse(subscriber_json(subscriber))

    async def delete_subscriber(self, request: Request, token: ApiToken) -> Response:
        """`DELETE /api/subscribers/{email}`: erase, like `subscribers remove`."""
        subscriber = await self._subscriber(request)
        await self.ctx.store.remove(subscriber.email)
        logger.info(
            "api: %s erased a subscriber",
            token.name,
            extra={"action": "api_subscriber_removed", "token": token.id},
        )
        return Response(status_code=204)

    async def openapi(self, request: Request) -> Response:
        """`GET /api/openapi.json`."""
        return JSONResponse(openapi_document())


def create_api_app(ctx: DashboardContext) -> Starlette:
    """The `/api` app (mounted by the admin listener)."""
    api = Api(ctx)
    s = api.scoped
    routes = [
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/alerts", s("alerts:read", api.list_alerts), methods=["GET"]),
        Route("/alerts/{key:path}", s("alerts:read", api.get_alert), methods=["GET"]),
        Route("/subscribers", s("subscribers:read", api.list_subscribers), methods=["GET"]),
        Route("/subscribers", s("subscribers:write", api.create_subscriber), methods=["POST"]),
        Route("/subscribers/{email}", s("subscribers:read", api.get_subscriber), methods=["GET"]),
        Route(
            "/subscribers/{email}", s("subscribers:write", api.patch_subscriber), methods=["PATCH"]
        ),
        Route(
            "/subscribers/{email}",
            s("subscribers:write", api.delete_subscriber),
            methods=["DELETE"],
        ),
    ]

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(request, exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return problem_response(request, Problem(exc.status_code, str(exc.detail)))

    async def on_store(request: Request, exc: Exception) -> Response:
        logger.error("api: %s", exc, extra={"action": "api_store_error"})
        return problem_response(
            request, Problem(503, "Service Unavailable", "database unavailable")
        )

    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={Problem: on_problem, HTTPException: on_http, StoreError: on_store},
    )
