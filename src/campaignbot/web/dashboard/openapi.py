"""The OpenAPI 3.1 document of `/api` (served at `/api/openapi.json`).

Written by hand next to the routes; a test validates it with openapi-spec-validator
and checks that its paths and methods are exactly the API's route table.
"""

from __future__ import annotations

from typing import Any

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_ERRORS = {"401": _PROBLEM, "403": _PROBLEM}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(summary: str, scope: str | None, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if scope is None:
        op["security"] = []
    else:
        op["description"] = f"Needs a token with the `{scope}` scope."
    return op


_EMAIL = {"name": "email", "in": "path", "required": True, "schema": {"type": "string"}}
_KEY = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": "the ledger's alert key, `event:reminder`",
    "schema": {"type": "string"},
}
_LIST = {"type": "array", "items": {"type": "string"}}


def openapi_document() -> dict[str, Any]:
    """The API description."""
    subscriber_in = {
        "type": "object",
        "required": ["email"],
        "additionalProperties": False,
        "properties": {
            "email": {"type": "string", "format": "email"},
            "name": {"type": "string"},
            "locale": {"type": "string"},
            "timezone": {"type": "string"},
            "countries": _LIST,
            "topics": _LIST,
            "confirmed": {
                "type": "boolean",
                "description": "add as active without double opt-in; needs `subscribers:consent`",
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "campaignbot API", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Problem": {
                    "description": "RFC 9457 problem details",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                }
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                    },
                },
                "Alert": {
                    "type": "object",
                    "required": ["key", "event", "reminder", "due_utc", "state"],
                    "properties": {
                        "key": {"type": "string"},
                        "event": {"type": "string"},
                        "reminder": {"type": "string"},
                        "kind": {"type": "string"},
                        "due_utc": {"type": "string", "format": "date-time"},
                        "state": {"enum": ["scheduled", "fired", "skipped"]},
                        **{
                            n: {"type": "integer"}
                            for n in ("sent", "pending", "retry", "failed", "uncertain", "skipped")
                        },
                    },
                },
                "AlertDetail": {
                    "type": "object",
                    "properties": {
                        "key": {"type": "string"},
                        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "rate_per_min": {"type": "number"},
                        "failures": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "email": {"type": "string"},
                                    "status": {"type": "string"},
                                    "code": {"type": ["integer", "null"]},
                                    "reason": {"type": "string"},
                                    "attempts": {"type": "integer"},
                                },
                            },
                        },
                    },
                },
                "Subscriber": {
                    "type": "object",
                    "properties": {
                        "email": {"type": "string"},
                        "name": {"type": "string"},
                        "locale": {"type": "string"},
                        "timezone": {"type": "string"},
                        "countries": _LIST,
                        "topics": _LIST,
                        "follows_all": {"type": "boolean"},
                        "status": {"enum": ["pending", "active", "unsubscribed", "bounced"]},
                        "consent_at": {"type": ["string", "null"], "format": "date-time"},
                        "consent_source": {"type": "string"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"},
                    },
                },
                "SubscriberIn": subscriber_in,
                "SubscriberPatch": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "locale": {"type": "string"},
                        "timezone": {"type": "string"},
                        "countries": _LIST,
                        "topics": _LIST,
                        "follows_all": {"type": "boolean"},
                        "status": {
                            "enum": ["active", "unsubscribed", "bounced"],
                            "description": "`suppressed` suppresses (do not contact); `active` only lifts a suppression",
                        },
                    },
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/openapi.json": {
                "get": _op("This document", None, {"200": _ok("OpenAPI", {"type": "object"})})
            },
            "/api/alerts": {
                "get": _op(
                    "Alerts: fired and skipped ones with counts, then the scheduled ones",
                    "alerts:read",
                    {"200": _ok("alerts", {"type": "array", "items": _ref("Alert")}), **_ERRORS},
                )
            },
            "/api/alerts/{key}": {
                "get": _op(
                    "One alert's deliveries by state and its failures",
                    "alerts:read",
                    {"200": _ok("the alert", _ref("AlertDetail")), "404": _PROBLEM, **_ERRORS},
                    parameters=[_KEY],
                )
            },
            "/api/subscribers": {
                "get": _op(
                    "One page of subscribers in sign-up order (`Link: rel=next` while more follow)",
                    "subscribers:read",
                    {
                        "200": _ok("subscribers", {"type": "array", "items": _ref("Subscriber")}),
                        **_ERRORS,
                    },
                    parameters=[
                        {"name": "status", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 5000,
                                "default": 500,
                            },
                        },
                        {
                            "name": "offset",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "default": 0},
                        },
                    ],
                ),
                "post": _op(
                    "Add a subscriber: double opt-in unless confirmed",
                    "subscribers:write",
                    {
                        "201": _ok("added as active (confirmed)", _ref("Subscriber")),
                        "202": _ok("confirmation mail sent (or nothing to do)", {"type": "object"}),
                        "409": _PROBLEM,
                        "422": _PROBLEM,
                        **_ERRORS,
                    },
                    requestBody={
                        "required": True,
                        "content": {"application/json": {"schema": _ref("SubscriberIn")}},
                    },
                ),
            },
            "/api/subscribers/{email}": {
                "parameters": [_EMAIL],
                "get": _op(
                    "One subscriber",
                    "subscribers:read",
                    {"200": _ok("the subscriber", _ref("Subscriber")), "404": _PROBLEM, **_ERRORS},
                ),
                "patch": _op(
                    "Change preferences, suppress or unsuppress",
                    "subscribers:write",
                    {
                        "200": _ok("the subscriber", _ref("Subscriber")),
                        "404": _PROBLEM,
                        "422": _PROBLEM,
                        **_ERRORS,
                    },
                    requestBody={
                        "required": True,
                        "content": {"application/json": {"schema": _ref("SubscriberPatch")}},
                    },
                ),
                "delete": _op(
                    "Erase the subscriber and their delivery history",
                    "subscribers:write",
                    {"204": {"description": "erased"}, "404": _PROBLEM, **_ERRORS},
                ),
            },
        },
    }
