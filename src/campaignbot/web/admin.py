"""The admin listener (`CAMPAIGNBOT_ADMIN__HOST/PORT`, loopback by default): probes and metrics.

Kept off the public port: the health details name the relay and its replies, and the
metrics count subscribers. The dashboard and the API are added here too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from campaignbot.web.dashboard.context import DashboardContext

Report = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


@dataclass(frozen=True)
class AdminContext:
    """What the admin routes ask: the service's health reports and metrics text."""

    #: database reachable and a valid campaign loaded
    ready: Report
    #: scheduler, database and transport, with details
    health: Report
    metrics: Callable[[], Awaitable[bytes]]
    #: the organizer dashboard (`/admin`) and the API (`/api`); None leaves them out
    dashboard: DashboardContext | None = None


def create_admin_app(ctx: AdminContext) -> Starlette:
    """The admin Starlette app: `/livez`, `/readyz`, `/healthz`, `/metrics`, and with a
    dashboard context `/admin` (login) and `/api` (bearer tokens)."""

    async def livez(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok, body = await ctx.ready()
        return JSONResponse(body, status_code=200 if ok else 503)

    async def healthz(request: Request) -> Response:
        ok, body = await ctx.health()
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(await ctx.metrics(), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    routes: list[BaseRoute] = [
        Route("/livez", livez, methods=["GET"], name="livez"),
        Route("/readyz", readyz, methods=["GET"], name="readyz"),
        Route("/healthz", healthz, methods=["GET"], name="healthz"),
        Route("/metrics", metrics, methods=["GET"], name="metrics"),
    ]
    if ctx.dashboard is not None:
        from campaignbot.web.dashboard.api import create_api_app
        from campaignbot.web.dashboard.pages import create_dashboard_app

        routes += [
            Mount("/admin", create_dashboard_app(ctx.dashboard)),
            Mount("/api", create_api_app(ctx.dashboard)),
        ]
    return Starlette(routes=routes)
