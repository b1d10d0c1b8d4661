"""The fast path (render once, fill in each subscriber) gives what render_alert gives."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from campaignbot.campaign.model import Campaign, load_campaign
from campaignbot.email.fast_path import SLOTS, EncodedBody, fill, split, wire_body
from campaignbot.email.mime import as_wire
from campaignbot.email.render import Recipient, Renderer
from campaignbot.email.tokens import LinkSigner

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
NOW = datetime(2025, 6, 16, 7, 30, 12, tzinfo=UTC)
PUBLIC = "https://alerts.example.org"
SIGNER = LinkSigner("test-secret", clock=lambda: 1_750_000_000.0)  # same token both ways
LOCALES = ["en", "fi", "pl", "fi_FI", "de"]
ZONES = ["Europe/Helsinki", "Europe/Warsaw", "America/New_York", "UTC", "Asia/Kolkata"]
BOUNDARY = re.compile(r'boundary="[^"]*"')
CAMPAIGN: Campaign = load_campaign(REPO / "config" / "campaign.toml")
RENDERER = Renderer(TEMPLATES, CAMPAIGN, signer=SIGNER, public_url=PUBLIC)


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def summary(msg: EmailMessage) -> list[object]:
    """Every header but Message-ID, and every decoded leaf part, however it was written."""
    headers = [(k, BOUNDARY.sub("B", str(v))) for k, v in msg.items() if k != "Message-ID"]
    leaves = [
        (part.get_content_type(), part.get("Content-Disposition"), part.get_content())
        for part in msg.walk()
        if not part.is_multipart()
    ]
    return [headers, leaves]


def same_as_slow(renderer: Renderer, to: Recipient, *, kind: str = "alert") -> bytes:
    event = CAMPAIGN.events[0]
    if kind == "alert":
        fast = renderer.wire_alert(event, "1d", to, now=NOW, sequence=2)
        slow = renderer.render_alert(event, "1d", to, now=NOW, sequence=2)
    else:
        fast = renderer.wire_notice(event, "postponed", to, now=NOW, sequence=3)
        slow = renderer.render_notice(event, "postponed", to, now=NOW, sequence=3)
    got = parse(fast.data)
    assert summary(got) == summary(parse(as_wire(slow)))
    assert got["Message-ID"] == fast.message_id
    assert fast.data.endswith(b"\r\n") and b"\n" not in fast.data.replace(b"\r\n", b"")
    return fast.data


names = st.one_of(
    st.just(""),
    st.text(max_size=60),
    st.text(alphabet="<>&\"'\\ ,;:@()[]äöŻ€—\u2028\r\n\t=?_.", max_size=30),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=names,
    locale=st.sampled_from(LOCALES),
    zone=st.sampled_from(ZONES),
    user=st.from_regex(r"[a-z0-9.&'+_-]{1,20}", fullmatch=True),
    id=st.integers(min_value=1, max_value=2**40),
    kind=st.sampled_from(["alert", "notice"]),
)
def test_fast_bytes_parse_to_what_the_templates_render(
    name: str, locale: str, zone: str, user: str, id: int, kind: str
) -> None:
    to = Recipient(id, f"{user}@example.org", name, locale, zone)
    same_as_slow(RENDERER, to, kind=kind)


def test_the_shipped_templates_take_the_fast_path() -> None:
    renderer = Renderer(TEMPLATES, CAMPAIGN, signer=SIGNER, public_url=PUBLIC)
    for locale in ("en", "fi", "pl"):
        for name in ("Anna", ""):
            same_as_slow(renderer, Recipient(7, "anna@example.org", name, locale, "UTC"))
    shapes = [entry[1] for _, entry in renderer._shapes.items()]
    assert len(shapes) == 6 and all(shape is not None for shape in shapes)


def test_each_subscriber_gets_a_new_message_id_and_own_links() -> None:
    event = CAMPAIGN.events[0]
    first = RENDERER.wire_alert(
        event, "1d", Recipient(1, "a@example.org", "A", "en", "UTC"), now=NOW
    )
    second = RENDERER.wire_alert(
        event, "1d", Recipient(2, "b@example.org", "B", "en", "UTC"), now=NOW
    )
    assert first.message_id != second.message_id
    one, two = parse(first.data), parse(second.data)
    assert SIGNER.verify(one["List-Unsubscribe"][1:-1].split("?t=")[1], "unsubscribe") == 1
    assert SIGNER.verify(two["List-Unsubscribe"][1:-1].split("?t=")[1], "unsubscribe") == 2


@pytest.mark.parametrize(
    ("template", "line"),
    [
        ("layout/alert.txt.j2", "{{ subscriber.name|upper }}"),
        ("layout/alert.txt.j2", "{% if subscriber.name == 'Bob' %}Hi Bob!{% endif %}"),
        ("layout/alert.txt.j2", "{{ subscriber.name|length }}"),
        ("layout/alert.txt.j2", "{{ subscriber.name[:3] }}"),
        ("layout/alert.txt.j2", "{{ subscriber.id }}"),
        ("layout/alert.txt.j2", "{{ unsubscribe_url|upper }}"),
        ("layout/alert.txt.j2", "{{ subscriber.email.split('@')[1] }}"),
        ("layout/alert.txt.j2", "{{ subscriber.name|e }}"),
        ("layout/alert.html.j2", "{{ subscriber.name|e|forceescape }}"),
        ("layout/alert.html.j2", "{{ subscriber.name|safe }}"),
        ("layout/alert.html.j2", "{{ subscriber.name|tojson }}"),
        ("layout/alert.html.j2", "{{ subscriber.name|urlencode }}"),
        ("layout/alert.subject.j2", " for {{ subscriber.name|title }}"),
    ],
)
def test_templates_that_do_more_than_print_a_value_fall_back(
    tmp_path: Path, template: str, line: str
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    path = templates / template
    source = path.read_text()
    if template.endswith("subject.j2"):
        path.write_text(source.rstrip("\n") + line + "\n")
    else:
        marker = "{% block content %}\n"
        assert marker in source
        path.write_text(source.replace(marker, marker + line + "\n", 1))
    renderer = Renderer(templates, CAMPAIGN, signer=SIGNER, public_url=PUBLIC)
    for name in ("Bob", "o'Brien & <Söhne>", ""):
        same_as_slow(renderer, Recipient(5, "bob@example.org", name, "en", "UTC"))
    # (kind, event, locale, zone, has a name, ...): with a name it must fall back
    named = [v[1] for k, v in renderer._shapes.items() if k[4]]
    assert named == [None]


def test_a_subject_with_the_name_is_filled_in_per_subscriber(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "alert/en.subject.j2").write_text(
        "{{ subscriber.name }}, {{ reminder.phrase }}: {{ event.title }}\n"
    )
    renderer = Renderer(templates, CAMPAIGN, signer=SIGNER, public_url=PUBLIC)
    data = same_as_slow(renderer, Recipient(5, "x@example.org", "Jörg\r\nBcc: x@y", "en", "UTC"))
    assert parse(data)["Subject"].startswith("Jörg Bcc: x@y, ")
    assert b"\r\nBcc:" not in data.split(b"\r\n\r\n", 1)[0]
    shapes = [entry[1] for _, entry in renderer._shapes.items()]
    assert shapes and all(shape is not None for shape in shapes)


def test_a_non_ascii_address_takes_the_slow_path() -> None:
    to = Recipient(9, "jörg@example.org", "Jörg", "en", "UTC")
    with pytest.raises(UnicodeEncodeError):  # as before: the SMTP policy cannot write it
        RENDERER.wire_alert(CAMPAIGN.events[0], "1d", to, now=NOW)


def test_split_and_fill_round_trip() -> None:
    pieces = split("Hi NAME, see URL and URL.", {"name": "NAME", "calendar": "URL"})
    assert pieces == ("Hi ", "name", ", see ", "calendar", " and ", "calendar", ".")
    assert fill(pieces, {"name": "<Bob>", "calendar": "u"}) == "Hi <Bob>, see u and u."
    assert fill(split("plain", {"name": "NAME"}), {}) == "plain"


body_text = st.text(alphabet="ab é=\t.\n<>&€", max_size=200)


@settings(max_examples=300, deadline=None)
@example(literals=["\n", ""], values=dict.fromkeys(SLOTS, ""), slots=["name"] * 5)  # empty tail
@example(literals=[""], values=dict.fromkeys(SLOTS, ""), slots=["name"] * 5)  # empty body
@given(
    literals=st.lists(body_text, min_size=1, max_size=6),
    values=st.fixed_dictionaries(
        {slot: st.text(alphabet="xy é=\t.<", max_size=90) for slot in SLOTS}
    ),
    slots=st.lists(st.sampled_from(SLOTS), min_size=5, max_size=5),
)
def test_an_encoded_body_is_the_whole_body_encoded(
    literals: list[str], values: dict[str, str], slots: list[str]
) -> None:
    """Encoding only the lines with a value per subscriber gives the same bytes as
    encoding the whole filled-in body (long lines, soft breaks, trailing blanks)."""
    pieces: list[str] = []
    for i, literal in enumerate(literals):
        pieces += [literal, slots[i]] if i < len(literals) - 1 else [literal]
    encoded = EncodedBody.of(tuple(pieces))
    assert encoded.render(values) == wire_body(fill(tuple(pieces), values))
