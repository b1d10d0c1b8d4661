"""`campaignbot check` for email templates: render every kind in every locale."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from jinja2 import TemplateSyntaxError

from campaignbot.campaign.model import Campaign, Event, Status, parse_offset
from campaignbot.campaign.planning import reminder_due
from campaignbot.email.render import CHANGES, Recipient, Renderer
from campaignbot.email.templates import (
    KINDS,
    PARTS,
    missing_template,
    problem_from,
    template_locales,
)
from campaignbot.email.tokens import LinkSigner
from campaignbot.errors import Problem, TemplateError
from campaignbot.settings import Settings


def _format_locale_or(renderer: Renderer, kind: str, locale: str) -> str:
    try:
        return renderer._format_locale(kind, locale)
    except TemplateError:
        return locale  # the broken template is reported when it is rendered


def _due(renderer: Renderer, event: Event, reminder: str) -> datetime:
    """When `reminder` of `event` goes out: its phrase is rendered from then."""
    return reminder_due(event, parse_offset(reminder), renderer.campaign.campaign.send_at)


def _sample_renders(renderer: Renderer, locale: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every kind with the context shapes it can get: each event (timed, all-day, with
    and without an action), each change, with and without a previous date."""
    campaign = renderer.campaign
    to = Recipient(
        0, "subscriber@example.org", "Sample Subscriber", locale, campaign.campaign.timezone.key
    )
    for event in campaign.events:
        reminder = event.reminders[0].label if event.reminders else "0"
        fmt = _format_locale_or(renderer, "alert", locale)
        yield (
            "alert",
            {
                **renderer._personal(to),
                "event": renderer._event_view(event, to, fmt, event.status),
                "reminder": renderer._reminder_view(
                    reminder, fmt, event, _due(renderer, event, reminder)
                ),
            },
        )
        fmt = _format_locale_or(renderer, "notice", locale)
        for change in CHANGES:
            previous = event.when if change == "rescheduled" else None
            status = event.status if change == "rescheduled" else Status(change)
            yield (
                "notice",
                {
                    **renderer._personal(to),
                    "event": renderer._event_view(event, to, fmt, status),
                    "change": change,
                    "previous_when": renderer._previous(previous, event, to, fmt),
                },
            )
    yield (
        "confirm",
        {
            "subscriber": to,
            "campaign": renderer.campaign_view(locale),
            "confirm_url": f"{renderer._public_url}/confirm?t=TOKEN",
        },
    )


def check_templates(settings: Settings, campaign: Campaign) -> list[Problem]:
    """Every template kind for every locale, rendered with a sample subscriber."""
    folder = settings.templates
    if not folder.is_dir():
        return [Problem(str(folder), "", "template folder not found (CAMPAIGNBOT_TEMPLATES)")]
    # a throwaway key: checking must not create the deployment's secret file
    signer = LinkSigner("campaignbot-check")
    renderer = Renderer(folder, campaign, signer=signer, public_url=settings.public_url)
    problems: list[Problem] = []
    for name in renderer.env.list_templates(
        filter_func=lambda n: n.endswith(".j2") and not n.startswith("web/")
    ):
        try:
            renderer.env.get_template(name)
        except TemplateSyntaxError as err:
            problems.append(problem_from(err, folder, name))
    default = campaign.campaign.default_locale
    for kind in KINDS:
        for part in PARTS:
            if not (folder / f"{kind}/{default}.{part}.j2").is_file():
                problems.append(missing_template(folder, kind, part, default))
    locales = dict.fromkeys([*campaign.locales, *template_locales(folder)])
    for locale in locales:
        try:
            samples = list(_sample_renders(renderer, locale))
        except TemplateError as err:  # building a sample context met a broken template
            problems.extend(err.problems)
            continue
        for kind, context in samples:
            for part in PARTS:
                try:
                    renderer._render(kind, part, locale, context)
                except TemplateError as err:
                    problems.extend(err.problems)
    return list(dict.fromkeys(problems))
