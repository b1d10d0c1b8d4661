"""`campaignbot web`: the public web pages alone, without scheduler or sender."""

from __future__ import annotations

import logging

import click

from campaignbot.cli.common import Context, cli, handle_errors, pass_context, run_async
from campaignbot.logs import configure_logging
from campaignbot.settings import Settings

logger = logging.getLogger(__name__)


async def serve_web(settings: Settings, *, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles both)."""
    import uvicorn

    from campaignbot.service.runtime import Service
    from campaignbot.web.app import create_app, listen

    sock = listen(host, port)
    service = Service(settings, web=False)
    try:
        await service.db.upgrade()
        # no scheduler runs here, and no admin listener: pages only
        app = create_app(service.web_context())
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            # X-Forwarded-For is read by the app, from CAMPAIGNBOT_HTTP__TRUSTED_PROXIES only
            proxy_headers=False,
        )
        logger.info(
            "campaignbot web: serving on http://%s:%d (pages only: no alerts are sent)",
            host,
            port,
            extra={"action": "web_started"},
        )
        await uvicorn.Server(config).serve([sock])
    finally:
        await service.transport.aclose()
        await service.db.dispose()


@cli.command()
@click.option("--host", default=None, help="Bind address (env CAMPAIGNBOT_HTTP__HOST).")
@click.option("--port", type=int, default=None, help="Port (env CAMPAIGNBOT_HTTP__PORT).")
@pass_context
@handle_errors
def web(ctx: Context, host: str | None, port: int | None) -> None:
    """Serve the public web pages only (sign-up, confirm, unsubscribe, calendar); no alerts."""
    configure_logging(level=logging.DEBUG if ctx.debug else logging.INFO, json_format=False)
    http = ctx.settings.http
    run_async(
        serve_web(
            ctx.settings,
            host=host if host is not None else http.host,
            port=port if port is not None else http.port,
        )
    )
