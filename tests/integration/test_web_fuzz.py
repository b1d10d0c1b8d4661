"""Hypothesis throws random form fields and query strings at the real app: never a 500.

pytest-asyncio runs each Hypothesis example of an async test in the test's event
loop, so the app, its database and the client share one loop across examples.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaignbot.service.runtime import Service
from campaignbot.settings import Settings
from campaignbot.subscribers.model import SubscriberInput
from campaignbot.web.app import create_app
from tests.clock import FakeClock

REPO = Path(__file__).resolve().parents[2]
FORM = {"content-type": "application/x-www-form-urlencoded"}

#: any character a client can encode (lone surrogates cannot be UTF-8, so httpx refuses)
CHARACTER = st.characters(exclude_categories=["Cs"])
FIELD_NAMES = st.sampled_from(
    ["email", "name", "locale", "timezone", "countries", "topics", "csrf_token", "t"]
) | st.text(max_size=12)
VALUES = st.one_of(
    st.text(max_size=60),  # any unicode, control characters included
    st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=30),
    st.sampled_from(
        [
            "",
            "a@example.org",
            "ünï@exämple.org",
            "a@b.c\r\nBcc: victim@example.org",
            "\x00",
            "FI",
            "fi",
            "PL;FI",
            "mine-ban-treaty",
            "Europe/Helsinki",
            "localtime",
            "../../etc/passwd",
            "<script>alert(1)</script>",
            "{email}",
            "x" * 5000,
        ]
    ),
    # huge: past the field limits and, often, past the request body limit
    st.builds(lambda c, n: c * n, CHARACTER, st.integers(300, 40_000)),
)
FIELDS = st.lists(st.tuples(FIELD_NAMES, VALUES), max_size=10)
#: query values: as nasty, but short enough for a URL (httpx refuses more than 64 KiB)
QUERY_VALUES = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["fi", "pl", "en", "de", "msp-22", "", "\x00", "MQ.abc.def"]),
    st.builds(lambda c, n: c * n, CHARACTER, st.integers(100, 1500)),
)
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Fuzzed:
    client: httpx.AsyncClient
    csrf: str
    token: dict[str, str]  # purpose -> a valid token of the fuzzing subscriber


@pytest.fixture
async def app_client(database_url: str, tmp_path: Path) -> AsyncIterator[Fuzzed]:
    settings_ = Settings(
        config=REPO / "config" / "campaign.toml",
        templates=REPO / "templates",
        database_url=database_url,
        maildir=tmp_path / "outbox",
        secret_key="fuzz-secret-0123456789abcdef-0123",
        public_url="http://testserver",
        var_dir=tmp_path / "var",
    )
    service = Service(settings_, clock=FakeClock(datetime(2026, 6, 1, tzinfo=UTC)), web=False)
    app = create_app(service.web_context(), subscribe_limit=(1_000_000, 60.0))
    entry = SubscriberInput.create("fuzz@example.org", locale="en", timezone="UTC")
    subscriber = await service.store.add(entry, now=service.clock(), source="fuzz")
    tokens = {
        p: service.signer.sign(p, subscriber.id, subscriber.link_nonce)
        for p in ("confirm", "preferences", "unsubscribe", "calendar")
    }
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        page = await client.get("/")
        csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        yield Fuzzed(client, csrf, tokens)
    await service.db.dispose()


def _body(fields: list[tuple[str, str]], csrf: str | None) -> bytes:
    pairs = [*fields, ("csrf_token", csrf)] if csrf is not None else fields
    return urlencode(pairs).encode()


def _check(response_status: int, what: str) -> None:
    assert response_status < 500, what


@FUZZ
@given(
    path=st.sampled_from(["/subscribe", "/preferences", "/unsubscribe"]),
    fields=FIELDS,
    with_csrf=st.booleans(),
    valid_token=st.booleans(),
    raw=st.none() | st.binary(max_size=200),
)
async def test_form_posts_never_fail(
    app_client: Fuzzed,
    path: str,
    fields: list[tuple[str, str]],
    with_csrf: bool,
    valid_token: bool,
    raw: bytes | None,
) -> None:
    f = app_client
    purpose = path.strip("/")
    query = {"t": f.token[purpose]} if valid_token and purpose in f.token else {}
    body = raw if raw is not None else _body(fields, f.csrf if with_csrf else None)
    response = await f.client.post(path, params=query, content=body, headers=FORM)
    _check(response.status_code, f"POST {path} {body[:200]!r}")
    if response.status_code in (200, 400):
        assert response.headers["content-type"].startswith("text/html")


@FUZZ
@given(
    path=st.sampled_from(["/", "/confirm", "/unsubscribe", "/preferences", "/events.ics"]),
    params=st.lists(st.tuples(st.sampled_from(["t", "lang", "event"]), QUERY_VALUES), max_size=4),
    accept_language=st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80
    ),
)
async def test_page_queries_never_fail(
    app_client: Fuzzed, path: str, params: list[tuple[str, str]], accept_language: str
) -> None:
    query = urlencode(params)
    response = await app_client.client.get(
        f"{path}?{query}", headers={"accept-language": accept_language}
    )
    _check(response.status_code, f"GET {path}?{query[:200]}")
