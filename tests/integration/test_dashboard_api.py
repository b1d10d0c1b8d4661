"""The JSON API (`/api`) on the admin listener: bearer tokens and scopes, subscribers,
alerts, RFC 9457 problems, the OpenAPI document (real database, real SMTP server)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from starlette.routing import Mount, Route

from campaignbot.subscribers.model import SubscriberStatus
from campaignbot.web.admin import create_admin_app
from campaignbot.web.dashboard.openapi import openapi_document
from tests.fixtures.smtp import SMTPServer
from tests.integration.dashboard_site import DeskFactory, desks, fire_with_outcomes

#: (method, path, scope it needs, JSON body)
ROUTES = [
    ("GET", "/api/alerts", "alerts:read", None),
    ("GET", "/api/alerts/msp-22:7d", "alerts:read", None),
    ("GET", "/api/subscribers", "subscribers:read", None),
    ("POST", "/api/subscribers", "subscribers:write", {"email": "new@example.org"}),
    ("GET", "/api/subscribers/kept@example.org", "subscribers:read", None),
    ("PATCH", "/api/subscribers/kept@example.org", "subscribers:write", {"locale": "fi"}),
    ("DELETE", "/api/subscribers/kept@example.org", "subscribers:write", None),
]
#: for each scope a token that lacks it
OTHER_SCOPE = {
    "alerts:read": "subscribers:consent",
    "subscribers:read": "alerts:read",
    "subscribers:write": "subscribers:read",
}


@pytest.fixture
async def desk(
    database_url: str, smtp_server: Callable[..., Awaitable[SMTPServer]], tmp_path: Path
) -> AsyncIterator[DeskFactory]:
    async with desks(database_url, smtp_server, tmp_path) as make:
        yield make


async def test_every_api_route_needs_a_token_with_its_scope(desk: DeskFactory) -> None:
    d = await desk()
    kept = await d.add("kept@example.org")
    await fire_with_outcomes(d)
    wrong = {"authorization": "Bearer cbt_00000000_not-a-real-secret"}
    for method, path, scope, body in ROUTES:
        for headers, status in [
            ({}, 401),
            (wrong, 401),
            ({"authorization": "Basic YWxpY2U6cGFzcw=="}, 401),
            (d.token(OTHER_SCOPE[scope]), 403),
        ]:
            response = await d.admin.request(method, path, json=body, headers=headers)
            assert response.status_code == status, (method, path, headers)
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["status"] == status
            assert problem["title"] in ("Unauthorized", "Forbidden")
            if status == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")
    # nothing changed
    after = await d.service.store.get_by_email("kept@example.org")
    assert after == kept
    assert await d.status("new@example.org") is None
    assert not d.smtp.messages


async def test_post_starts_the_double_opt_in(desk: DeskFactory) -> None:
    d = await desk()
    write = d.token("subscribers:write")
    response = await d.admin.post(
        "/api/subscribers",
        json={"email": "Newcomer@Example.org", "locale": "fi", "countries": ["FI"]},
        headers=write,
    )
    assert response.status_code == 202
    assert response.json() == {"email": "Newcomer@example.org", "status": "confirmation_sent"}
    # a sign-up until the link is followed: not a subscriber yet (issue 14)
    assert await d.status("newcomer@example.org") is None
    assert len(d.smtp.messages) == 1
    body = d.smtp.messages[0].message.get_body(("plain",))
    assert body is not None and re.search(r"/confirm\?t=", body.get_content())


async def test_confirmed_needs_the_consent_scope(desk: DeskFactory) -> None:
    d = await desk()
    entry = {"email": "held@example.org", "confirmed": True}
    refused = await d.admin.post(
        "/api/subscribers", json=entry, headers=d.token("subscribers:write")
    )
    assert refused.status_code == 403
    assert "subscribers:consent" in refused.json()["detail"]
    assert await d.status("held@example.org") is None
    added = await d.admin.post(
        "/api/subscribers", json=entry, headers=d.token("subscribers:consent")
    )
    assert added.status_code == 201
    assert added.json()["status"] == "active"
    assert added.json()["consent_source"] == "api:test"
    again = await d.admin.post(
        "/api/subscribers", json=entry, headers=d.token("subscribers:consent")
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert not d.smtp.messages


async def test_bad_input_is_a_problem_and_changes_nothing(desk: DeskFactory) -> None:
    d = await desk()
    write = d.token("subscribers:write")
    for body, status in [
        ({"email": "not an address"}, 422),
        ({"email": "a@example.org", "locale": "xx-nope"}, 422),
        ({"email": "a@example.org", "admin": True}, 422),
    ]:
        response = await d.admin.post("/api/subscribers", json=body, headers=write)
        assert response.status_code == status, body
        assert response.json()["detail"]
    text = await d.admin.post(
        "/api/subscribers",
        content=b"email=a@example.org",
        headers={**write, "content-type": "text/plain"},
    )
    assert text.status_code == 415
    broken = await d.admin.post(
        "/api/subscribers", content=b"{", headers={**write, "content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert await d.service.store.list_subscribers() == []


async def test_get_patch_delete_a_subscriber(desk: DeskFactory) -> None:
    d = await desk()
    await d.add("person@example.org", countries=["FI"])
    write = d.token("subscribers:write")
    listing = await d.admin.get("/api/subscribers", headers=write)
    assert [s["email"] for s in listing.json()] == ["person@example.org"]
    active = await d.admin.get("/api/subscribers?status=active", headers=write)
    assert len(active.json()) == 1
    one = await d.admin.get("/api/subscribers/PERSON@example.org", headers=write)
    assert one.json()["countries"] == ["FI"]
    changed = await d.admin.patch(
        "/api/subscribers/person@example.org",
        json={"locale": "fi", "topics": ["mine-ban-treaty"]},
        headers=write,
    )
    assert changed.status_code == 200
    assert changed.json()["locale"] == "fi"
    assert changed.json()["topics"] == ["mine-ban-treaty"]
    suppressed = await d.admin.patch(
        "/api/subscribers/person@example.org", json={"status": "suppressed"}, headers=write
    )
    assert suppressed.json()["status"] == "suppressed"
    lifted = await d.admin.patch(
        "/api/subscribers/person@example.org", json={"status": "active"}, headers=write
    )
    assert lifted.json()["status"] == "active"
    # activation is no way around double opt-in
    await d.admin.patch(
        "/api/subscribers/person@example.org", json={"status": "unsubscribed"}, headers=write
    )
    sneaky = await d.admin.patch(
        "/api/subscribers/person@example.org", json={"status": "active"}, headers=write
    )
    assert sneaky.status_code == 422
    assert await d.status("person@example.org") is SubscriberStatus.UNSUBSCRIBED
    gone = await d.admin.delete("/api/subscribers/person@example.org", headers=write)
    assert gone.status_code == 204
    assert await d.status("person@example.org") is None
    missing = await d.admin.get("/api/subscribers/person@example.org", headers=write)
    assert missing.status_code == 404
    assert missing.headers["x-content-type-options"] == "nosniff"
    assert missing.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "person@example.org: no such subscriber",
        "instance": "/api/subscribers/person@example.org",
    }


async def test_subscribers_come_in_pages(desk: DeskFactory) -> None:
    d = await desk()
    for n in range(5):
        await d.add(f"p{n}@example.org")
    read = d.token("subscribers:read")
    first = await d.admin.get("/api/subscribers?limit=2&status=active", headers=read)
    assert [s["email"] for s in first.json()] == ["p0@example.org", "p1@example.org"]
    assert first.headers["link"] == '</api/subscribers?limit=2&status=active&offset=2>; rel="next"'
    last = await d.admin.get("/api/subscribers?limit=2&offset=4", headers=read)
    assert [s["email"] for s in last.json()] == ["p4@example.org"]
    assert "link" not in last.headers
    for query in ("limit=0", "limit=9999", "offset=-1", "limit=two"):
        bad = await d.admin.get(f"/api/subscribers?{query}", headers=read)
        assert bad.status_code == 400, query
        assert bad.headers["content-type"] == "application/problem+json"


async def test_alerts_list_and_detail(desk: DeskFactory) -> None:
    d = await desk()
    await fire_with_outcomes(d)
    read = d.token("alerts:read")
    alerts = (await d.admin.get("/api/alerts", headers=read)).json()
    by_key = {a["key"]: a for a in alerts}
    assert by_key["msp-22:7d"]["state"] == "fired"
    assert by_key["msp-22:7d"]["sent"] == 1 and by_key["msp-22:7d"]["failed"] == 1
    assert by_key["msp-22:1d"]["state"] == "scheduled"
    detail = (await d.admin.get("/api/alerts/msp-22:7d", headers=read)).json()
    assert detail["counts"] == {"sent": 1, "failed": 1, "pending": 1}
    assert detail["failures"] == [
        {
            "email": "refused@example.org",
            "status": "failed",
            "code": 550,
            "reason": "550 5.1.1 mailbox unknown",
            "attempts": 1,
        }
    ]
    assert (await d.admin.get("/api/alerts/nope:0", headers=read)).status_code == 404


async def test_openapi_document_validates_and_matches_the_route_table(desk: DeskFactory) -> None:
    d = await desk()
    served = await d.admin.get("/api/openapi.json")
    assert served.status_code == 200
    document = served.json()
    assert document == openapi_document()
    validate(document)
    app = create_admin_app(d.service.admin_context())
    api = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/api")
    routes = {
        (method.lower(), "/api" + r.path.replace("{key:path}", "{key}"))
        for r in api.routes
        if isinstance(r, Route)
        for method in (r.methods or set()) - {"HEAD"}
    }
    documented = {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "patch", "put", "delete"}
    }
    assert routes == documented
