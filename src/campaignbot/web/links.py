"""The pages behind the links in emails: confirm, unsubscribe, preferences.

Every token is verified before anything is read or changed, and must carry the row's
current link nonce (see email/tokens.py): a forged, tampered, expired or outdated link
gets a 400 page and changes nothing. GET never changes anything (mail scanners follow
links); the RFC 8058 one-click unsubscribe POST needs no CSRF token, its signed URL is
the authorization.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from campaignbot.email.tokens import LinkToken
from campaignbot.errors import TokenError
from campaignbot.subscribers.model import Subscriber, SubscriberStatus
from campaignbot.web import forms

if TYPE_CHECKING:
    from campaignbot.web.app import Web

logger = logging.getLogger(__name__)

#: an active or pending subscriber's links act; any other status has nothing to undo
_LIVE = (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING)
CSRF_COOKIE = "campaignbot_csrf"


class LinkPages:
    """The handlers of the email links, over the app's shared page parts (`web`)."""

    def __init__(self, web: Web) -> None:
        self.web = web

    async def owner(self, link: LinkToken) -> tuple[Subscriber | None, bool]:
        """The subscriber a link names, and whether the link is current: made for the
        row's present link nonce (older links outlived an unsubscribe or re-subscribe)."""
        subscriber = await self.web.ctx.store.get(link.id)
        if subscriber is None:
            return None, False
        current = hmac.compare_digest(subscriber.link_nonce.encode(), link.nonce.encode())
        return subscriber, current

    def _links(self, request: Request, subscriber: Subscriber, lang: str) -> dict[str, str]:
        sign = self.web.ctx.snapshot().signer.sign
        return {
            purpose: self.web.path(
                request, purpose, t=sign(purpose, subscriber.id, subscriber.link_nonce), lang=lang
            )
            for purpose in ("preferences", "unsubscribe")
        }

    async def confirm_form(self, request: Request) -> Response:
        """GET: a page with one button; nothing changes (mail scanners follow links)."""
        try:
            link = self.web.verify(request, "confirm")
        except TokenError as err:
            return self.web.bad_link(request, err, self.web.lang(request))
        pending = await self.web.signups.pending(link.id, link.nonce)
        if pending is None:
            return self.web.bad_link(request, None, self.web.lang(request), used=True)
        email, locale = pending
        lang = self.web.lang(request, locale)
        t = self.web.pages.catalog(lang)
        return self.web.page(
            request,
            lang,
            "confirm.html.j2",
            question=forms.fill(t["privacy"]["confirm_body"], email=email),
            action=self.web.path(request, "confirm", t=request.query_params["t"], lang=lang),
        )

    async def confirm(self, request: Request) -> Response:
        """POST: the sign-up becomes a subscription (once; the link is then used up)."""
        try:
            link = self.web.verify(request, "confirm")
        except TokenError as err:
            return self.web.bad_link(request, err, self.web.lang(request))
        subscriber = await self.web.signups.confirm(link.id, link.nonce, now=self.web.ctx.clock())
        if subscriber is None:
            return self.web.bad_link(request, None, self.web.lang(request), used=True)
        lang = self.web.lang(request, subscriber.locale)
        t, links = self.web.pages.catalog(lang), self._links(request, subscriber, lang)
        if subscriber.status is not SubscriberStatus.ACTIVE:
            status = self.web.status_text(lang, subscriber.status)
            text = forms.fill(t["not_subscribed_body"], status=status)
            return self.web.message(request, lang, "not_subscribed_title", [text])
        logger.info(
            "subscriber %d: confirmed on the web",
            subscriber.id,
            extra={"action": "confirmed", "subscriber": subscriber.id},
        )
        return self.web.message(
            request,
            lang,
            "confirmed_title",
            ["confirmed_body"],
            links=[
                (t["manage_preferences"], links["preferences"]),
                (t["unsubscribe_link"], links["unsubscribe"]),
            ],
            tone="ok",
        )

    async def unsubscribe_form(self, request: Request) -> Response:
        """GET: a one-button page; nothing changes (mail scanners follow links)."""
        try:
            link = self.web.verify(request, "unsubscribe")
        except TokenError as err:
            return self.web.bad_link(request, err, self.web.lang(request))
        subscriber, current = await self.owner(link)
        if subscriber is None:
            return self.web.bad_link(request, None, self.web.lang(request))
        lang = self.web.lang(request, subscriber.locale)
        if not current:
            return self._old_unsubscribe_link(request, subscriber, lang)
        t = self.web.pages.catalog(lang)
        return self.web.page(
            request,
            lang,
            "unsubscribe.html.j2",
            question=forms.fill(t["unsubscribe_body"], email=subscriber.email),
            action=self.web.path(request, "unsubscribe", t=request.query_params["t"], lang=lang),
            preferences_url=self._links(request, subscriber, lang)["preferences"],
        )

    def _old_unsubscribe_link(
        self, request: Request, subscriber: Subscriber, lang: str
    ) -> HTMLResponse:
        """A link from before the subscriber's last unsubscribe or re-subscribe: while
        they are still out it may say so (an RFC 8058 link in an old email must keep
        working); once they are back, it is refused. Either way nothing changes."""
        if subscriber.status in _LIVE:
            return self.web.bad_link(request, None, lang, used=True)
        return self.web.message(
            request, lang, "unsubscribed_title", ["unsubscribed_body"], tone="ok"
        )

    async def unsubscribe(self, request: Request) -> Response:
        """POST (RFC 8058 one-click, or the page's button): unsubscribe now, idempotently.

        No CSRF token: mail providers post here; the signed URL is the authorization.
        Deliveries not yet sent are skipped by the sender's opt-out check.
        """
        try:
            link = self.web.verify(request, "unsubscribe")
        except TokenError as err:
            return self.web.bad_link(request, err, self.web.lang(request))
        subscriber, current = await self.owner(link)
        lang = self.web.lang(request, subscriber.locale if subscriber else None)
        if subscriber is not None and not current:
            return self._old_unsubscribe_link(request, subscriber, lang)
        if subscriber is not None and subscriber.status in _LIVE:
            await self.web.ctx.store.set_status(
                subscriber.id, SubscriberStatus.UNSUBSCRIBED, now=self.web.ctx.clock()
            )
            logger.info(
                "subscriber %d: unsubscribed on the web",
                subscriber.id,
                extra={"action": "unsubscribed", "subscriber": subscriber.id},
            )
        return self.web.message(
            request, lang, "unsubscribed_title", ["unsubscribed_body"], tone="ok"
        )

    async def preferences(self, request: Request) -> Response:
        try:
            link = self.web.verify(request, "preferences")
        except TokenError as err:
            return self.web.bad_link(request, err, self.web.lang(request))
        store = self.web.ctx.store
        subscriber, current = await self.owner(link)
        if subscriber is None or not current:
            return self.web.bad_link(
                request, None, self.web.lang(request), used=subscriber is not None
            )
        subscriber_id = subscriber.id
        lang = self.web.lang(request, subscriber.locale)
        cookie = self.web.csrf_cookie(request)
        values = forms.FormValues(
            email=subscriber.email,
            locale=subscriber.locale,
            timezone=subscriber.timezone,
            countries=sorted(subscriber.countries),
            topics=sorted(subscriber.topics),
        )
        errors: forms.FieldErrors = {}
        saved, status = False, 200
        if request.method == "POST":
            fields = await self.web.form(request)
            if not self.web.csrf.check(
                request.cookies.get(CSRF_COOKIE), (fields.get("csrf_token") or [""])[0]
            ):
                return self.web.message(request, lang, "csrf_title", ["csrf_body"], status=403)
            prefs, values, errors = forms.parse_preferences(fields, self.web._choices())
            if prefs is None:
                status = 400
            else:
                updated = await store.update_preferences(
                    subscriber_id,
                    countries=prefs.countries,
                    topics=prefs.topics,
                    locale=prefs.locale,
                    timezone=prefs.timezone,
                    now=self.web.ctx.clock(),
                )
                if updated is None:
                    return self.web.bad_link(request, None, lang)
                subscriber, saved = updated, True
                lang = self.web.lang(request, subscriber.locale)
        t = self.web.pages.catalog(lang)
        inactive = ""
        if subscriber.status is not SubscriberStatus.ACTIVE:
            status_text = self.web.status_text(lang, subscriber.status)
            inactive = forms.fill(t["preferences_inactive"], status=status_text)
        response = self.web.page(
            request,
            lang,
            "preferences.html.j2",
            status=status,
            email=subscriber.email,
            saved=saved,
            inactive_text=inactive,
            values=values,
            errors=errors,
            csrf_token=self.web.csrf.field(cookie),
            action=self.web.path(request, "preferences", t=request.query_params["t"], lang=lang),
            unsubscribe_url=self._links(request, subscriber, lang)["unsubscribe"],
            timezone_options=[(z, z.replace("_", " ")) for z in self.web.timezones],
            **self.web._options(lang),
        )
        return self.web.with_csrf(request, response, cookie)
