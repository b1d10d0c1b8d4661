"""Every message in every language: no English left in a translation, no missing
key, no "in 1 week". The English words come from the rendered English messages
themselves (every kind, change and event), not from a hand-picked list."""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, MIMEPart
from pathlib import Path

import pytest

from campaignbot.campaign.model import LOCALES, Campaign, Event, load_campaign, parse_offset
from campaignbot.email.render import CHANGES, Recipient, Renderer
from campaignbot.email.tokens import LinkSigner
from campaignbot.errors import TemplateError

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
PUBLIC = "https://alerts.example.org"
NOW = datetime(2024, 1, 8, 9, tzinfo=UTC)  # before every event of the campaign

#: names that stay as they are in every language
PROPER_NAMES = {
    "Anna",
    "Sejm",
    "Eduskunta",
    "Riigikogu",
    "Saeima",
    "Seimas",
    "Ottawa",
    "Example",
    "Campaign",
    "Network",
    "Esimerkkikatu",
    "Helsinki",
    "Estonia",  # the same in Polish
    "Latvia",  # the same in Finnish
}
#: words that are English and also ordinary words of the language
FALSE_FRIENDS = {
    "fi": {"on"},  # "is"
    "pl": {"to", "link"},  # "this"; "link" is Polish too
    "et": {"on", "me", "august", "link"},  # "is", "we", the month, "link"
    "lv": {"to", "un"},  # "it", "and"
    "lt": {"to"},  # "of that"
}
_URL = re.compile(r"(?:https?|webcal)://\S+|\S+@\S+|\b\S+\.ics\b")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return load_campaign(REPO / "config" / "campaign.toml")


@pytest.fixture(scope="module")
def renderer(campaign: Campaign) -> Renderer:
    return Renderer(TEMPLATES, campaign, signer=LinkSigner("lang-test"), public_url=PUBLIC)


def _text(message: EmailMessage) -> str:
    """What a reader sees: subject, plain text and the HTML's text, links removed."""
    plain = message.get_body(("plain",))
    page = message.get_body(("html",))
    assert isinstance(plain, MIMEPart) and isinstance(page, MIMEPart)
    shown = re.sub(r"<(script|style)\b.*?</\1>", " ", str(page.get_content()), flags=re.DOTALL)
    shown = html.unescape(re.sub(r"<[^>]+>", " ", shown))
    return _URL.sub(" ", "\n".join([str(message["Subject"]), plain.get_content(), shown]))


def _messages(renderer: Renderer, campaign: Campaign, locale: str) -> Iterator[str]:
    """Every kind x change x event in `locale`, as text."""
    to = Recipient(1, "reader@example.org", "Anna", locale, "Europe/Helsinki")
    for event in campaign.events:
        yield _text(renderer.render_alert(event, "7d", to, now=NOW))
        for change in CHANGES:
            yield _text(
                renderer.render_notice(
                    event, change, to, now=NOW, sequence=1, previous_when=event.when
                )
            )
    yield _text(renderer.render_confirm(to, now=NOW))


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text) if len(w) > 1}


@pytest.fixture(scope="module")
def english(renderer: Renderer, campaign: Campaign) -> set[str]:
    words: set[str] = set()
    for text in _messages(renderer, campaign, "en"):
        words |= _words(text)
    return {w.casefold() for w in words - PROPER_NAMES}


@pytest.mark.parametrize("locale", [loc for loc in LOCALES if loc != "en"])
def test_no_english_word_is_left_in_a_translation(
    renderer: Renderer, campaign: Campaign, english: set[str], locale: str
) -> None:
    allowed = FALSE_FRIENDS.get(locale, set())
    leaks: dict[str, str] = {}
    for text in _messages(renderer, campaign, locale):
        for word in _words(text) - PROPER_NAMES:
            if word.casefold() in english and word.casefold() not in allowed:
                line = next(line for line in text.splitlines() if word in line)
                leaks.setdefault(word, line.strip())
    assert not leaks, f"English in {locale}: {leaks}"


def _keys(path: Path) -> set[str]:
    return set(re.findall(r"^\{% set (\w+) = ", path.read_text(), flags=re.MULTILINE))


@pytest.mark.parametrize("locale", LOCALES)
def test_every_language_has_every_key(locale: str) -> None:
    english = _keys(TEMPLATES / "strings" / "en.j2")
    assert english
    assert _keys(TEMPLATES / "strings" / f"{locale}.j2") == english
    for kind in ("alert", "notice", "confirm"):
        for part in ("subject", "txt", "html"):
            assert (TEMPLATES / kind / f"{locale}.{part}.j2").is_file()


def test_a_missing_key_fails_the_render(tmp_path: Path, campaign: Campaign) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    path = templates / "strings" / "lv.j2"
    path.write_text(re.sub(r"^\{% set when = .*\n", "", path.read_text(), flags=re.MULTILINE))
    renderer = Renderer(templates, campaign, signer=LinkSigner("x"), public_url=PUBLIC)
    to = Recipient(1, "reader@example.org", "", "lv", "Europe/Riga")
    with pytest.raises(TemplateError, match="when"):
        renderer.render_alert(campaign.event("msp-22"), "1d", to, now=NOW)


def _due(event: Event, reminder: str) -> datetime:
    offset = parse_offset(reminder)
    start = event.when
    assert isinstance(start, datetime)
    start = start if start.tzinfo else start.replace(tzinfo=event.timezone)
    return start.astimezone(event.timezone) - timedelta(days=offset.days) - offset.duration


_LONE_ONE = re.compile(r"(?<![\d.,:/])1(?![\d.,:/])")


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("reminder", ["1m", "1h", "1d", "7d", "1w", "0", "10d", "2w"])
def test_a_single_unit_is_said_in_words(
    renderer: Renderer, campaign: Campaign, locale: str, reminder: str
) -> None:
    event = campaign.event("msp-22")
    to = Recipient(1, "reader@example.org", "", locale, "Europe/Helsinki")
    message = renderer.render_alert(event, reminder, to, now=_due(event, reminder))
    phrase = re.split(r" [–—] ", str(message["Subject"]), maxsplit=1)[0]
    assert not _LONE_ONE.search(phrase), phrase
    body = message.get_body(("plain",))
    assert isinstance(body, MIMEPart)
    assert f"{phrase}:" in body.get_content()
