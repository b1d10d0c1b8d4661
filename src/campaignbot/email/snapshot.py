"""The runtime snapshot: one valid campaign and everything built from it.

The service swaps the whole snapshot on reload (one attribute assignment), so a
request or a send reads a campaign, its renderer, its link signer and its plan that
belong together. It is also the one factory of `Renderer` and `LinkSigner` for the
service, `send` and `preview`.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaignbot.campaign.model import Campaign, load_campaign
from campaignbot.campaign.planning import PlannedAlert, alerts_for_event
from campaignbot.email.render import Renderer
from campaignbot.email.template_check import check_templates
from campaignbot.email.tokens import LinkSigner
from campaignbot.errors import TemplateError
from campaignbot.settings import Settings


@dataclass(frozen=True)
class Snapshot:
    """What a reload replaces, all at once."""

    campaign: Campaign
    renderer: Renderer
    signer: LinkSigner
    #: every reminder of every scheduled event, due order
    plan: tuple[PlannedAlert, ...]


def build_snapshot(settings: Settings, campaign: Campaign) -> Snapshot:
    """The renderer, signer and plan of an already validated `campaign`."""
    signer = LinkSigner.from_settings(settings)
    renderer = Renderer(settings.templates, campaign, signer=signer, public_url=settings.public_url)
    send_at = campaign.campaign.send_at
    plan = tuple(sorted(a for e in campaign.events for a in alerts_for_event(e, send_at)))
    return Snapshot(campaign, renderer, signer, plan)


def load_snapshot(settings: Settings) -> Snapshot:
    """The campaign file and templates, both checked; raises InvalidInputError."""
    campaign = load_campaign(settings.config)
    problems = check_templates(settings, campaign)
    if problems:
        raise TemplateError(problems)
    return build_snapshot(settings, campaign)
