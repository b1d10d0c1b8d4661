"""`campaignbot run`: the long-running service."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import click

from campaignbot.cli.common import Context, cli, handle_errors, pass_context, run_async
from campaignbot.logs import configure_logging
from campaignbot.settings import Settings

logger = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP reloads the config."""
    from campaignbot.service.runtime import Service

    service = Service(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_stop(signum: int) -> None:
        if stop.is_set():
            # a second signal: leave now; the ledger has everything, leases expire
            logger.warning("second %s: exiting at once", signal.Signals(signum).name)
            os._exit(1)
        logger.info("%s: stopping", signal.Signals(signum).name, extra={"action": "stop_requested"})
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop, signum)
    loop.add_signal_handler(signal.SIGHUP, service.request_reload, "SIGHUP")
    from campaignbot import systemd

    watchdog: asyncio.Task[None] | None = None
    try:
        await service.start()
        systemd.notify("READY=1")
        if (interval_s := systemd.watchdog_interval_s()) is not None:
            watchdog = asyncio.create_task(systemd.keep_watchdog_fed(interval_s))
        await service.run(stop)
    finally:
        systemd.notify("STOPPING=1")
        if watchdog is not None:
            watchdog.cancel()
        await service.stop()


@cli.command()
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines for people or JSON for machines.",
)
@pass_context
@handle_errors
def run(ctx: Context, log_format: str) -> None:
    """Run the service: scheduler, sender and web server (SIGHUP reloads, SIGTERM stops)."""
    configure_logging(
        level=logging.DEBUG if ctx.debug else logging.INFO, json_format=log_format == "json"
    )
    run_async(serve(ctx.settings))
