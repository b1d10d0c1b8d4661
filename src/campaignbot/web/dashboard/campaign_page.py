"""The Campaign page's data: the running campaign, the file on disk checked like a
reload would check it, and what saving it would change."""

from __future__ import annotations

import asyncio
from typing import Any

from campaignbot.errors import InvalidInputError
from campaignbot.web.dashboard.changes import preview_changes
from campaignbot.web.dashboard.context import DashboardContext


async def campaign_view(ctx: DashboardContext) -> dict[str, Any]:
    """Template context of `campaign.html.j2`."""
    running, now = ctx.snapshot(), ctx.clock()
    info = running.campaign.campaign
    default = info.default_locale
    view: dict[str, Any] = {
        "campaign_name": info.name,
        "config_path": str(ctx.config_path),
        "events": [
            {"id": e.id, "title": e.title_for(default, default), "status": e.status.value}
            for e in running.campaign.events
        ],
        "ahead": sum(1 for a in running.plan if a.due_utc > now),
        "errors": [],
        "changes": [],
    }
    try:
        # the same check a reload makes (campaign file and every template); in a thread,
        # as it renders every template in every locale
        on_disk = await asyncio.to_thread(ctx.check_config)
    except InvalidInputError as err:
        view["errors"] = str(err).splitlines()
        return view
    view["changes"] = preview_changes(
        running.plan,
        on_disk.plan,
        running.campaign.events,
        on_disk.campaign.events,
        now=now,
    )
    return view
