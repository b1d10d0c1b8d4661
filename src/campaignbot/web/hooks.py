"""`POST /hooks/<provider>`: the relays' signed bounce and complaint webhooks.

Each provider's request is verified before anything changes (a forgery gets 401),
parsed into `BounceReport`s, and handed to `record`, the same path the bounce mailbox
takes. The verifiers, parsers and the recorder come from the composition root through a
`HookContext`, so this module imports neither `delivery` nor `service`.

Mount: `Mount("", routes=hook_routes(HookContext(providers=..., record=...)))` or add
the routes to the public app's route list.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from campaignbot.email.reports import BounceReport

logger = logging.getLogger(__name__)

#: relays send small JSON batches; anything bigger is not theirs
MAX_BODY_BYTES = 1024 * 1024


class WebhookProvider(Protocol):
    """One relay's webhook: check the request is genuine, then read its events."""

    name: str

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """True only when the request carries the relay's valid signature or credentials."""
        ...

    def parse(self, body: bytes) -> list[BounceReport]:
        """The bounce, drop and complaint events in a verified body; ValueError if malformed."""
        ...


#: records reports (idempotently, by their keys) and returns the action taken for each
RecordReports = Callable[[Sequence[BounceReport]], Awaitable[Sequence[str]]]


@dataclass(frozen=True)
class HookContext:
    """What the hook routes need: the configured providers and the recorder."""

    providers: Mapping[str, WebhookProvider]
    record: RecordReports


def hook_routes(context: HookContext) -> list[Route]:
    """The `POST /hooks/{provider}` route bound to `context`."""

    async def receive(request: Request) -> JSONResponse:
        name = request.path_params["provider"]
        provider = context.providers.get(name)
        if provider is None:  # unknown, or its secret is not configured
            return JSONResponse({"error": "no such webhook"}, status_code=404)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return JSONResponse({"error": "body too large"}, status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return JSONResponse({"error": "body too large"}, status_code=413)
        if not provider.verify(request.headers, body):
            logger.warning(
                "hooks/%s: refused a request with a bad signature from %s",
                name,
                request.client.host if request.client else "?",
                extra={"action": "webhook_refused", "provider": name},
            )
            return JSONResponse({"error": "bad signature"}, status_code=401)
        try:
            reports = provider.parse(body)
        except (ValueError, TypeError, KeyError, json.JSONDecodeError) as err:
            return JSONResponse({"error": f"malformed payload: {err}"}, status_code=400)
        actions = Counter(await context.record(reports)) if reports else Counter[str]()
        return JSONResponse({"received": len(reports), "actions": dict(actions)})

    return [Route("/hooks/{provider}", receive, methods=["POST"])]
