"""The HTTP surface: Slack's requests, Cloud Run's probes, and the runbooks the bot links to."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.log import trace_context
from bot.runbooks import Runbooks

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]
_TRACE = re.compile(r"^([0-9a-f]{32})")


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


def web_app(bolt: AsyncApp, runbooks: Runbooks, project: str, lifespan: Lifespan | None = None) -> Starlette:
    slack = AsyncSlackRequestHandler(bolt)

    async def events(request: Request) -> Response:
        return await slack.handle(request)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def runbook(request: Request) -> Response:
        found = runbooks.get(request.path_params["service"])
        if found is None:
            return HTMLResponse("<h1>No such runbook</h1>", status_code=404)
        return HTMLResponse(found.html())

    async def runbook_index(request: Request) -> Response:
        items = "".join(f'<li><a href="/runbooks/{html.escape(name)}">{html.escape(name)}</a></li>'
                        for name in runbooks.services())
        return HTMLResponse(f"<!doctype html><title>Runbooks</title><h1>Runbooks</h1><ul>{items}</ul>")

    app = Starlette(lifespan=lifespan, routes=[
        Route("/slack/events", events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/runbooks", runbook_index, methods=["GET"]),
        Route("/runbooks/{service}", runbook, methods=["GET"]),
    ])
    app.add_middleware(TraceMiddleware, project=project)
    return app
