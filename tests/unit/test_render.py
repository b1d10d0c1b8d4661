"""Rendering: every header and part of the shipped emails, parsed back."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from icalendar import Calendar

from campaignbot.campaign.model import Campaign, Event, load_campaign, parse_campaign, parse_offset
from campaignbot.email.render import Recipient, Renderer
from campaignbot.email.template_check import check_templates
from campaignbot.email.tokens import LinkSigner
from campaignbot.settings import Settings

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
NOW = datetime(2025, 6, 16, 7, 30, tzinfo=UTC)
PUBLIC = "https://alerts.example.org"
SIGNER = LinkSigner("test-secret")
LOCALES = ["en", "fi", "pl", "et", "lv", "lt"]
TOMORROW = {"en": "Tomorrow", "fi": "Huomenna", "pl": "Jutro"}
#: the subject's separator: Finnish (and the others) use a spaced en dash
DASH = {"en": " — ", "fi": " – ", "pl": " – "}


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return load_campaign(REPO / "config" / "campaign.toml")


@pytest.fixture(scope="module")
def renderer(campaign: Campaign) -> Renderer:
    return Renderer(TEMPLATES, campaign, signer=SIGNER, public_url=PUBLIC)


def due(event: Event, reminder: str) -> datetime:
    """When `reminder` of the timed `event` is due (the phrase is computed from it)."""
    assert isinstance(event.when, datetime)
    offset = parse_offset(reminder)
    start = event.when if event.when.tzinfo else event.when.replace(tzinfo=event.timezone)
    return start.astimezone(event.timezone) - timedelta(days=offset.days) - offset.duration


def recipient(
    locale: str = "en",
    timezone: str = "Europe/Helsinki",
    *,
    name: str = "Anna Virtanen",
    email: str = "anna@example.com",
    id: int = 42,
) -> Recipient:
    return Recipient(id=id, email=email, name=name, locale=locale, timezone=timezone)


def parse(msg: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body((subtype,))
    assert isinstance(part, EmailMessage)
    return str(part.get_content()).replace("\r\n", "\n")


def token_of(url: str, route: str) -> str:
    prefix = f"{PUBLIC}/{route}?t="
    assert url.startswith(prefix), url
    return url.removeprefix(prefix)


def calendar_of(msg: EmailMessage) -> tuple[EmailMessage, Calendar]:
    attachments = list(msg.iter_attachments())
    assert len(attachments) == 1
    part = attachments[0]
    assert isinstance(part, EmailMessage)
    return part, Calendar.from_ical(part.get_content())


@pytest.mark.parametrize("locale", LOCALES[:3])
def test_an_alert_has_every_header_and_part(
    renderer: Renderer, campaign: Campaign, locale: str
) -> None:
    event = campaign.event("fi-final-vote")
    now = due(event, "1d")
    msg = parse(renderer.render_alert(event, "1d", recipient(locale), now=now, sequence=1))
    title = event.title[locale]

    assert msg["Subject"] == f"{TOMORROW[locale]}{DASH[locale]}{title}"
    assert msg["From"] == campaign.campaign.sender_name_for(locale) + " <alerts@example.org>"
    assert msg["To"] == "Anna Virtanen <anna@example.com>"
    assert parsedate_to_datetime(msg["Date"]) == now
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith("@example.org>")
    assert msg["List-Id"] == "<stay-in-the-mine-ban-treaty.example.org>"
    unsubscribe = msg["List-Unsubscribe"]
    assert unsubscribe.startswith("<") and unsubscribe.endswith(">")
    assert SIGNER.verify(token_of(unsubscribe[1:-1], "unsubscribe"), "unsubscribe") == 42
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["MIME-Version"] == "1.0"

    assert msg.get_content_type() == "multipart/mixed"
    alternative, attachment = msg.get_payload()  # type: ignore[misc]
    assert alternative.get_content_type() == "multipart/alternative"
    plain, html = alternative.get_payload()
    assert plain.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    for part in (plain, html):
        assert part.get_content_charset() == "utf-8"

    body = text_of(msg, "plain")
    assert title in body
    assert event.action is not None
    assert event.action.url in body
    assert f"{PUBLIC}/unsubscribe?t=" in body and f"{PUBLIC}/preferences?t=" in body
    page = text_of(msg, "html")
    assert f'<html lang="{locale}">' in page
    assert f'href="{event.action.url}"' in page
    assert f'href="{unsubscribe[1:-1]}"' in page

    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "PUBLISH"
    assert attachment.get_content_charset() == "utf-8"
    assert attachment.get_filename() == "fi-final-vote.ics"
    _, cal = calendar_of(msg)
    (vevent,) = cal.walk("VEVENT")
    assert str(vevent["UID"]) == "fi-final-vote@example.org"
    assert vevent.decoded("SEQUENCE") == 1
    assert str(vevent["SUMMARY"]) == title


def test_wire_format_is_smtp_ready(renderer: Renderer, campaign: Campaign) -> None:
    raw = renderer.render_alert(
        campaign.event("fi-final-vote"), "1d", recipient("pl", name="Łukasz Żółć"), now=NOW
    ).as_bytes()
    raw.decode("ascii")  # 7-bit clean: RFC 2047 headers, quoted-printable and base64 bodies
    lines = raw.split(b"\r\n")
    assert all(b"\n" not in line and len(line) <= 998 for line in lines)
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert b"To: =?utf-8?" in header_block
    # the unsubscribe URL is one unencoded line, as mail providers expect
    assert b"List-Unsubscribe: <https://alerts.example.org/unsubscribe?t=" in header_block
    msg = parse(
        renderer.render_alert(
            campaign.event("fi-final-vote"), "1d", recipient("pl", name="Łukasz Żółć"), now=NOW
        )
    )
    assert msg["To"].addresses[0].display_name == "Łukasz Żółć"
    assert msg["To"].addresses[0].addr_spec == "anna@example.com"


@pytest.mark.parametrize(
    ("name", "display"),
    [
        ('Doe, "Jane"', 'Doe, "Jane"'),
        ("O'Brien (work)", "O'Brien (work)"),
        ("", ""),
    ],
)
def test_display_names_with_specials_survive(
    renderer: Renderer, campaign: Campaign, name: str, display: str
) -> None:
    msg = parse(
        renderer.render_alert(campaign.event("msp-22"), "1d", recipient(name=name), now=NOW)
    )
    (address,) = msg["To"].addresses
    assert address.display_name == display
    assert address.addr_spec == "anna@example.com"


def test_each_message_gets_its_own_id_and_links(renderer: Renderer, campaign: Campaign) -> None:
    event = campaign.event("msp-22")
    first = parse(renderer.render_alert(event, "1d", recipient(id=1), now=NOW))
    second = parse(renderer.render_alert(event, "1d", recipient(id=2), now=NOW))
    assert first["Message-ID"] != second["Message-ID"]
    assert first["List-Unsubscribe"] != second["List-Unsubscribe"]
    assert (
        SIGNER.verify(token_of(second["List-Unsubscribe"][1:-1], "unsubscribe"), "unsubscribe") == 2
    )


@pytest.mark.parametrize(
    ("locale", "reminder", "phrase"),
    [
        ("en", "1d", "Tomorrow"),
        ("fi", "1d", "Huomenna"),
        ("pl", "1d", "Jutro"),
        ("en", "3d", "In 3 days"),
        ("fi", "3d", "3 päivän päästä"),
        ("pl", "3d", "Za 3 dni"),
        ("en", "2h", "In 2 hours"),
        ("pl", "2h", "Za 2 godziny"),
        ("en", "0", "Now"),
        ("fi", "0", "Nyt"),
    ],
)
def test_the_reminder_is_a_localized_relative_phrase(
    renderer: Renderer, campaign: Campaign, locale: str, reminder: str, phrase: str
) -> None:
    event = campaign.event("fi-final-vote")
    msg = parse(renderer.render_alert(event, reminder, recipient(locale), now=due(event, reminder)))
    assert msg["Subject"].startswith(f"{phrase}{DASH[locale]}")
    assert f"{phrase}:" in text_of(msg, "plain")


def test_the_day_of_an_all_day_event_is_today(renderer: Renderer, campaign: Campaign) -> None:
    day = datetime(2025, 6, 27, 13, tzinfo=UTC)  # 09:00 in New York, the event's zone
    msg = parse(renderer.render_alert(campaign.event("baltic-deposit"), "0", recipient(), now=day))
    assert msg["Subject"].startswith("Today — ")


@pytest.mark.parametrize(
    ("locale", "timezone", "expected"),
    [
        ("en", "Europe/Helsinki", "Thursday, 19 June 2025 at 10:00 (Eastern European Summer Time)"),
        ("en", "Europe/Warsaw", "at 09:00 (Central European Summer Time)"),
        ("fi", "Europe/Warsaw", "klo 9.00 (Keski-Euroopan kesäaika)"),
        ("pl", "Europe/Warsaw", "09:00 (czas środkowoeuropejski letni)"),
        ("pl", "America/New_York", "03:00 (czas wschodnioamerykański letni)"),
    ],
)
def test_times_are_shown_in_the_subscribers_zone(
    renderer: Renderer, campaign: Campaign, locale: str, timezone: str, expected: str
) -> None:
    # the event is at 10:00 Helsinki time
    msg = parse(
        renderer.render_alert(
            campaign.event("fi-final-vote"), "1d", recipient(locale, timezone), now=NOW
        )
    )
    assert expected in text_of(msg, "plain")
    assert expected in text_of(msg, "html")


@pytest.mark.parametrize("timezone", ["Pacific/Auckland", "Pacific/Honolulu"])
def test_an_all_day_event_shows_its_own_date_only(
    renderer: Renderer, campaign: Campaign, timezone: str
) -> None:
    msg = parse(
        renderer.render_alert(
            campaign.event("baltic-deposit"), "1d", recipient("en", timezone), now=NOW
        )
    )
    body = text_of(msg, "plain")
    assert "When: Friday, 27 June 2025\n" in body
    words = re.sub(r"https://\S+", "", body).split()  # signed links may hold "AM"
    assert "AM" not in words and "PM" not in words


def test_a_missing_locale_file_falls_back_to_the_default(
    tmp_path: Path, campaign: Campaign
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "alert" / "fi.html.j2").unlink()
    renderer = Renderer(templates, campaign, signer=SIGNER, public_url=PUBLIC)
    event = campaign.event("msp-22")
    msg = parse(renderer.render_alert(event, "1d", recipient("fi"), now=due(event, "1d")))
    assert msg["Subject"].startswith("Huomenna – ")
    assert "Aika:" in text_of(msg, "plain")
    page = text_of(msg, "html")
    assert '<html lang="en">' in page and "When" in page
    # the event's own texts stay Finnish
    assert campaign.event("msp-22").title["fi"] in page


@pytest.mark.parametrize(("locale", "used"), [("fi_FI", "fi"), ("pl-PL", "pl"), ("de", "en")])
def test_regional_and_unknown_locales_use_the_closest_templates(
    renderer: Renderer, campaign: Campaign, locale: str, used: str
) -> None:
    event = campaign.event("msp-22")
    msg = parse(renderer.render_alert(event, "1d", recipient(locale), now=due(event, "1d")))
    assert f'<html lang="{used}">' in text_of(msg, "html")
    assert msg["Subject"].startswith(f"{TOMORROW[used]}{DASH[used]}")


def _hostile_campaign() -> Campaign:
    return parse_campaign(
        {
            "campaign": {
                "name": "Test\tcampaign",
                "sender": "Alerts <alerts@example.net>",
                "timezone": "Europe/Warsaw",
            },
            "events": [
                {
                    "id": "vote",
                    "title": "Vote\nBcc: victim@example.com",
                    "when": "2026-03-01T12:00:00",
                    "reminders": ["1d"],
                }
            ],
        },
        source="test",
    )


def test_no_header_can_be_injected(tmp_path: Path) -> None:
    campaign = _hostile_campaign()
    renderer = Renderer(TEMPLATES, campaign, signer=SIGNER, public_url=PUBLIC)
    to = recipient(name="Eve\r\nBcc: victim@example.com\u2028X-Evil: 1")
    raw = renderer.render_alert(campaign.events[0], "1d", to, now=NOW).as_bytes()
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in header_block and b"\r\nX-Evil" not in header_block
    msg = parse(renderer.render_alert(campaign.events[0], "1d", to, now=NOW))
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["Subject"] == "In 258 days — Vote Bcc: victim@example.com"
    assert msg["To"].addresses[0].display_name == "Eve Bcc: victim@example.com X-Evil: 1"
    assert msg["To"].addresses[0].addr_spec == "anna@example.com"


def test_a_subject_template_cannot_inject_headers(tmp_path: Path, campaign: Campaign) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "alert" / "en.subject.j2").write_text(
        "Hello\r\nBcc: victim@example.com\n\n{{ event.title }}\n"
    )
    renderer = Renderer(templates, campaign, signer=SIGNER, public_url=PUBLIC)
    msg = parse(renderer.render_alert(campaign.event("msp-22"), "1d", recipient(), now=NOW))
    assert msg["Bcc"] is None
    assert msg["Subject"].startswith("Hello Bcc: victim@example.com Mine Ban Treaty")


def test_an_address_that_could_break_the_header_is_refused(
    renderer: Renderer, campaign: Campaign
) -> None:
    from campaignbot.errors import InvalidInputError

    for bad in ("anna@example.com\r\nBcc: x@y.z", "Anna <anna@example.com>", "no-at-sign"):
        with pytest.raises(InvalidInputError):
            renderer.render_alert(campaign.event("msp-22"), "1d", recipient(email=bad), now=NOW)


def test_html_escapes_subscriber_data(renderer: Renderer, campaign: Campaign) -> None:
    msg = parse(
        renderer.render_alert(
            campaign.event("msp-22"), "1d", recipient(name="<script>x()</script>"), now=NOW
        )
    )
    page = text_of(msg, "html")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<script>x()</script>" in text_of(msg, "plain")  # plain text is not HTML


@pytest.mark.parametrize("locale", LOCALES[:3])
@pytest.mark.parametrize(
    ("change", "status", "word"),
    [
        ("cancelled", "CANCELLED", {"en": "Cancelled", "fi": "Peruttu", "pl": "Odwołane"}),
        ("postponed", "TENTATIVE", {"en": "Postponed", "fi": "Siirretty", "pl": "Przełożone"}),
        (
            "rescheduled",
            "CONFIRMED",
            {"en": "New date", "fi": "Uusi ajankohta", "pl": "Nowy termin"},
        ),
    ],
)
def test_a_notice_tells_the_change_with_an_updated_calendar(
    renderer: Renderer,
    campaign: Campaign,
    locale: str,
    change: str,
    status: str,
    word: dict[str, str],
) -> None:
    # scheduled in the file (or removed from it): STATUS follows the change
    event = campaign.event("msp-22")
    previous = datetime(2026, 12, 1, 9, tzinfo=UTC)
    msg = parse(
        renderer.render_notice(
            event, change, recipient(locale), now=NOW, sequence=3, previous_when=previous
        )
    )
    assert msg["Subject"] == f"{word[locale]}{DASH[locale]}{event.title[locale]}"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    part, cal = calendar_of(msg)
    assert part.get_filename() == "msp-22.ics"
    (vevent,) = cal.walk("VEVENT")
    assert vevent.decoded("SEQUENCE") == 3
    assert str(vevent["STATUS"]) == status
    body = text_of(msg, "plain")
    assert "11:00" in body or "11.00" in body  # previous: 09:00 UTC in Helsinki


def test_a_cancelled_event_notice_carries_status_cancelled(renderer: Renderer) -> None:
    campaign = parse_campaign(
        {
            "campaign": {
                "name": "Test",
                "sender": "Alerts <alerts@example.net>",
                "timezone": "Europe/Warsaw",
            },
            "events": [
                {"id": "vote", "title": "Vote", "when": "2026-03-01", "status": "cancelled"}
            ],
        },
        source="test",
    )
    own = Renderer(TEMPLATES, campaign, signer=SIGNER, public_url=PUBLIC)
    msg = parse(
        own.render_notice(campaign.events[0], "cancelled", recipient(), now=NOW, sequence=1)
    )
    _, cal = calendar_of(msg)
    (vevent,) = cal.walk("VEVENT")
    assert str(vevent["STATUS"]) == "CANCELLED"
    assert "Sunday, 1 March 2026" in text_of(msg, "plain")


@pytest.mark.parametrize("locale", LOCALES)
def test_a_confirmation_carries_a_confirm_link_and_no_calendar(
    renderer: Renderer, locale: str
) -> None:
    msg = parse(renderer.render_confirm(recipient(locale, id=77), now=NOW))
    assert msg.get_content_type() == "multipart/alternative"
    assert list(msg.iter_attachments()) == []
    assert msg["List-Unsubscribe-Post"] is None
    assert msg["List-Id"] == "<stay-in-the-mine-ban-treaty.example.org>"
    assert msg["To"] == "Anna Virtanen <anna@example.com>"
    body = text_of(msg, "plain")
    link = next(line for line in body.splitlines() if line.startswith(f"{PUBLIC}/confirm?t="))
    assert SIGNER.verify(token_of(link, "confirm"), "confirm") == 77
    assert f'href="{link}"' in text_of(msg, "html")


def test_unknown_changes_and_reminders_are_refused(renderer: Renderer, campaign: Campaign) -> None:
    from campaignbot.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="unknown change"):
        renderer.render_notice(campaign.events[0], "moved", recipient(), now=NOW, sequence=1)
    with pytest.raises(InvalidInputError, match="reminder"):
        renderer.render_alert(campaign.events[0], "tomorrow", recipient(), now=NOW)


# --- check_templates ------------------------------------------------------------------


def _settings(templates: Path) -> Settings:
    return Settings(templates=templates)


def test_the_shipped_templates_pass_the_check(campaign: Campaign) -> None:
    assert check_templates(_settings(TEMPLATES), campaign) == []


def _copy(tmp_path: Path) -> Path:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    return templates


def test_check_reports_a_syntax_error_with_file_and_line(
    tmp_path: Path, campaign: Campaign
) -> None:
    templates = _copy(tmp_path)
    path = templates / "layout" / "notice.txt.j2"
    lines = path.read_text().splitlines()
    lines[3] = "{{ subscriber.name ) }}"  # line 4
    path.write_text("\n".join(lines) + "\n")
    problems = check_templates(_settings(templates), campaign)
    assert len(problems) == 1
    assert problems[0].file == f"{path}:4"


def test_check_reports_an_undefined_variable_with_file_and_line(
    tmp_path: Path, campaign: Campaign
) -> None:
    templates = _copy(tmp_path)
    path = templates / "layout" / "alert.html.j2"
    source = path.read_text()
    line = source.splitlines().index("{{ heading(event.title) }}") + 1
    path.write_text(source.replace("{{ heading(event.title) }}", "{{ heading(evnt.title) }}"))
    problems = check_templates(_settings(templates), campaign)
    assert [str(p) for p in problems] == [f"{path}:{line}: 'evnt' is undefined"]


def test_check_reports_an_error_in_a_shared_partial(tmp_path: Path, campaign: Campaign) -> None:
    templates = _copy(tmp_path)
    path = templates / "layout" / "footer.txt.j2"
    path.write_text("\n\n{{ unsubscribe_link }}\n")
    problems = check_templates(_settings(templates), campaign)
    assert [p.file for p in problems] == [f"{path}:3"]
    assert "'unsubscribe_link' is undefined" in problems[0].message


def test_check_reports_a_missing_default_template(tmp_path: Path, campaign: Campaign) -> None:
    templates = _copy(tmp_path)
    (templates / "confirm" / "en.subject.j2").unlink()
    problems = check_templates(_settings(templates), campaign)
    assert [p.file for p in problems] == [str(templates / "confirm" / "en.subject.j2")]
    assert "missing" in problems[0].message


def test_check_reports_a_missing_template_folder(tmp_path: Path, campaign: Campaign) -> None:
    problems = check_templates(_settings(tmp_path / "nowhere"), campaign)
    assert len(problems) == 1 and "not found" in problems[0].message


@pytest.mark.parametrize("locale", LOCALES)
def test_the_footer_names_the_organisation_and_links_the_privacy_page(
    renderer: Renderer, campaign: Campaign, locale: str
) -> None:
    organization = campaign.campaign.organization_for(locale)
    assert organization
    event = campaign.event("msp-22")
    for msg in (
        parse(renderer.render_alert(event, "1d", recipient(locale), now=due(event, "1d"))),
        parse(renderer.render_confirm(recipient(locale), now=NOW)),
    ):
        assert organization in text_of(msg, "plain")
        assert organization in text_of(msg, "html")
        assert f"{PUBLIC}/privacy" in text_of(msg, "plain")
        assert f'href="{PUBLIC}/privacy"' in text_of(msg, "html")
        assert msg["From"] == f"{campaign.campaign.sender_name_for(locale)} <alerts@example.org>"


def test_both_times_are_shown_when_the_zones_differ(renderer: Renderer, campaign: Campaign) -> None:
    event = campaign.event("msp-22")  # 10:00 in Geneva
    msg = parse(renderer.render_alert(event, "1d", recipient("en"), now=due(event, "1d")))
    body = text_of(msg, "plain")
    assert "When: Monday, 7 December 2026 at 11:00 (Eastern European Standard Time)" in body
    assert "Local time at the event: 10:00 (Central European Standard Time)" in body
    assert "10:00 (Central European Standard Time)" in text_of(msg, "html")
    same = parse(
        renderer.render_alert(event, "1d", recipient("en", "Europe/Zurich"), now=due(event, "1d"))
    )
    assert "Local time at the event" not in text_of(same, "plain")


def test_an_alert_links_the_public_feed_by_webcal_and_https(
    renderer: Renderer, campaign: Campaign
) -> None:
    event = campaign.event("msp-22")
    msg = parse(renderer.render_alert(event, "1d", recipient("fi"), now=due(event, "1d")))
    page = text_of(msg, "html")
    assert 'href="webcal://alerts.example.org/events.ics?lang=fi"' in page
    assert f'href="{PUBLIC}/events.ics?lang=fi"' in page
    assert "webcal://alerts.example.org/events.ics?lang=fi" in text_of(msg, "plain")


def test_a_cancellation_notice_carries_method_cancel(
    renderer: Renderer, campaign: Campaign
) -> None:
    event = campaign.event("msp-22")
    msg = parse(renderer.render_notice(event, "cancelled", recipient(), now=NOW, sequence=4))
    part, cal = calendar_of(msg)
    assert part.get_param("method") == "CANCEL" and str(cal["METHOD"]) == "CANCEL"
    (vevent,) = cal.walk("VEVENT")
    assert vevent.decoded("SEQUENCE") == 4 and str(vevent["STATUS"]) == "CANCELLED"
    assert "X-WR-CALNAME" not in cal
    assert "removes it" not in text_of(msg, "plain")  # no promise the client may not keep
    moved = parse(renderer.render_notice(event, "postponed", recipient(), now=NOW, sequence=5))
    assert calendar_of(moved)[0].get_param("method") == "PUBLISH"


def test_a_long_non_ascii_name_gives_encoded_words_of_at_most_75(
    renderer: Renderer, campaign: Campaign
) -> None:
    name = "Łukasz Żółć-Brzęczyszczykiewicz z Szczebrzeszyna"  # over 45 UTF-8 bytes
    event = campaign.event("msp-22")
    raw = renderer.render_alert(event, "1d", recipient("pl", name=name), now=NOW).as_bytes()
    wire = renderer.wire_alert(event, "1d", recipient("pl", name=name), now=NOW).data
    for data in (raw, wire):
        head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
        words = re.findall(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=", head)
        assert words and max(len(w) for w in words) <= 75
        # RFC 2047 6.2: the space between adjacent encoded-words is not text (the
        # stdlib's address parser keeps it; decode_header follows the RFC)
        to = re.search(rb"\r\nTo: (.*?)\r\n(?! )", data, re.DOTALL)
        assert to is not None
        decoded = str(make_header(decode_header(to.group(1).decode("ascii"))))
        assert decoded == f"{name} <anna@example.com>"
