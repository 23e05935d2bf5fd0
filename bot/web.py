"""The HTTP surface: Slack's requests, Cloud Run's probes, the runbooks the bot links to (for the holders of those
links only), and Cloud Monitoring's alert notifications (for the holder of the channel's token only)."""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.adapters.monitoring_webhook import (
    CHALLENGE,
    MAX_BODY_BYTES,
    PATH,
    TOKEN_PARAMETER,
    MalformedAlert,
    WebhookAuth,
    parse_alert,
)
from bot.bounded_body import bounded_body
from bot.domain.monitoring_alert import OnAlert
from bot.log import trace_context
from bot.runbook_links import INDEX, LINK_LIFETIME, TOKEN, LinkKey, SignedPages, page_path
from bot.runbooks import Runbooks
from bot.slack_route import SlackEvents

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]
_TRACE = re.compile(r"^([0-9a-f]{32})")
log = logging.getLogger(__name__)


class TraceMiddleware:
    """Ties log lines to Cloud Run's request trace, so one request's logs group together."""

    def __init__(self, app: ASGIApp, project: str) -> None:
        self.app = app
        self.project = project

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"x-cloud-trace-context", b"").decode("latin-1")
            match = _TRACE.match(header)
            token = trace_context.set(f"projects/{self.project}/traces/{match.group(1)}" if match else "")
            try:
                await self.app(scope, receive, send)
            finally:
                trace_context.reset(token)
        else:
            await self.app(scope, receive, send)


_FRESH_LINK = ("Find the latest alert or report in Slack and follow its runbook link, or type "
               "<code>/health &lt;service&gt;</code> in Slack: its report links the service's runbook.")
_FROM_SLACK = ("<!doctype html>\n<html lang=\"en\"><meta charset=\"utf-8\"><title>Runbook</title>"
               "<h1>Open this runbook from Slack</h1><p>Runbooks open only from the links the bot posts in Slack. "
               f"{_FRESH_LINK}</p></html>\n")
_EXPIRED = ("<!doctype html>\n<html lang=\"en\"><meta charset=\"utf-8\"><title>Runbook link expired</title>"
            f"<h1>This link has expired</h1><p>A runbook link opens for {LINK_LIFETIME.days} days. {_FRESH_LINK}</p>"
            "</html>\n")

_PAGE_HEADERS = {"Referrer-Policy": "no-referrer"}
"""A page's URL carries its token; `no-referrer` keeps it out of the Referer header when a reader follows a link
out of the runbook: "sent requests do not include any referrer information"
(https://developer.mozilla.org/Web/HTTP/Headers/Referrer-Policy)."""


def _monitoring_route(token: str, on_alert: OnAlert) -> Route:
    auth = WebhookAuth(token)

    async def monitoring_alert(request: Request) -> Response:
        """The credentials are checked before the body is read; a refusal says nothing about what was wrong. A
        request with none is how a Basic channel starts (it waits for the challenge), so only wrong ones warn."""
        tokens = request.query_params.getlist(TOKEN_PARAMETER)
        authorization = request.headers.get("authorization")
        if not auth.admits(tokens, authorization):
            if tokens or authorization is not None:
                log.warning("refused a Cloud Monitoring notification without valid credentials")
            else:
                log.info("challenged a Cloud Monitoring notification that came without credentials")
            return Response(status_code=401, headers=CHALLENGE)
        body = await bounded_body(request, MAX_BODY_BYTES)
        if body is None:
            return PlainTextResponse(f"a notification is at most {MAX_BODY_BYTES} bytes", status_code=413)
        try:
            alert = parse_alert(body)
        except MalformedAlert as exc:
            log.warning("refused a malformed Cloud Monitoring notification: %s", exc)
            return PlainTextResponse(str(exc), status_code=400)
        await on_alert(alert)
        return Response(status_code=200)

    return Route(PATH, monitoring_alert, methods=["POST"])


def web_app(slack: SlackEvents | None, runbooks: Runbooks, project: str, lifespan: Lifespan | None = None, *,
            link_key: LinkKey | None, monitoring_token: str | None, on_alert: OnAlert) -> Starlette:
    """`slack` None: Slack's requests come over Socket Mode and `/slack/events` answers 404, like any path the bot
    does not serve. `link_key` None: links point elsewhere (runbook_base_url) and the bot's own pages open to no one.
    `monitoring_token` None: the webhook is off and its path answers 404, like any path the bot does not serve."""

    def closed(key: LinkKey | None, path: str, request: Request) -> Response | None:
        """None when the link opens `path`. The same answer for a missing, tampered or borrowed token: which one it
        was helps only a guesser. Only a link the key signed for this path learns that its time has passed."""
        check = "refused" if key is None else key.check(path, request.query_params.get(TOKEN), time.time())
        if check == "open":
            return None
        return HTMLResponse(_EXPIRED if check == "expired" else _FROM_SLACK, status_code=403, headers=_PAGE_HEADERS)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def runbook(request: Request) -> Response:
        service = request.path_params["service"]
        if (refusal := closed(link_key, page_path(service), request)) is not None:
            return refusal
        found = runbooks.get(service)
        if found is None:
            return HTMLResponse("<h1>No such runbook</h1>", status_code=404, headers=_PAGE_HEADERS)
        return HTMLResponse(found.html(), headers=_PAGE_HEADERS)

    async def runbook_index(request: Request) -> Response:
        if (refusal := closed(link_key, INDEX, request)) is not None or link_key is None:
            return refusal or HTMLResponse(_FROM_SLACK, status_code=403, headers=_PAGE_HEADERS)
        pages = SignedPages("", link_key)
        items = "".join(f'<li><a href="{html.escape(pages.url(name))}">{html.escape(name)}</a></li>'
                        for name in runbooks.services())
        return HTMLResponse(f"<!doctype html><title>Runbooks</title><h1>Runbooks</h1><ul>{items}</ul>",
                            headers=_PAGE_HEADERS)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route(INDEX, runbook_index, methods=["GET"]),
        Route(INDEX + "/{service}", runbook, methods=["GET"]),
    ]
    if slack is not None:
        routes.append(Route("/slack/events", slack.handle, methods=["POST"]))
    if monitoring_token is not None:
        routes.append(_monitoring_route(monitoring_token, on_alert))
    app = Starlette(lifespan=lifespan, routes=routes)
    app.add_middleware(TraceMiddleware, project=project)
    return app
