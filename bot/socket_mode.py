"""Slack's requests over Socket Mode (`chatops serve --socket-mode`): the same Bolt app as over HTTP, fed by Bolt's
async Socket Mode handler instead of `POST /slack/events`.

Over the WebSocket there is no signature to check: the connection was opened with the app-level token and "there's
no need to verify or validate inbound events, because you're receiving the events over a pre-authenticated
WebSocket" (https://docs.slack.dev/apis/events-api/using-socket-mode). The rest of what the HTTP route does before
Bolt (slack_route.py) is done here too: a slash command without `user_id`, `channel_id` or `response_url` is
answered without any work, and a click Bolt cannot route goes to `unroutable`. There is no body to cap: the
payload arrives as one WebSocket message, which aiohttp refuses past its 4 MiB default (`max_msg_size`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.slack_route import COMMAND_FIELDS, Unroutable, missing_fields

log = logging.getLogger(__name__)


Routable = Callable[[Mapping[str, Any]], bool]


class _Handler(AsyncSocketModeHandler):
    """Bolt's handler, with the HTTP route's checks in front of Bolt."""

    def __init__(self, bolt: AsyncApp, app_token: str, *, routable: Routable, unroutable: Unroutable) -> None:
        super().__init__(bolt, app_token)
        self._routable = routable
        self._unroutable = unroutable

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        payload = req.payload
        if missing := missing_fields(payload):
            log.warning("refused a slash command over Socket Mode without %s", ", ".join(missing))
            text = f"a slash command needs {', '.join(COMMAND_FIELDS)}; this one has no {', '.join(missing)}"
            await client.send_socket_mode_response(SocketModeResponse(req.envelope_id, payload={"text": text}))
            return
        if not self._routable(payload):
            await self._unroutable(payload)
            await client.send_socket_mode_response(SocketModeResponse(req.envelope_id))
            return
        await super().handle(client, req)


class SocketModeRequests:
    """The WebSocket to Slack, first to `first_url` (bot/adapters/socket_url.py); every later URL (Slack's
    refreshes) Bolt's client opens itself through the Bolt app's Web API client, so at the same Slack API base URL.
    Made when opened: slack_sdk's client needs the running event loop."""

    def __init__(self, bolt: AsyncApp, app_token: str, first_url: str, *, routable: Routable,
                 unroutable: Unroutable) -> None:
        self._bolt = bolt
        self._app_token = app_token
        self._first_url = first_url
        self._routable = routable
        self._unroutable = unroutable
        self._handler: _Handler | None = None

    async def open(self) -> None:
        """Connect; returns once the WebSocket is open."""
        self._handler = _Handler(self._bolt, self._app_token, routable=self._routable, unroutable=self._unroutable)
        self._handler.client.wss_uri = self._first_url
        await self._handler.connect_async()  # type: ignore[no-untyped-call]  # Bolt leaves it unannotated

    async def aclose(self) -> None:
        """Close the WebSocket cleanly and stop reconnecting: Slack sends what comes next to other connections."""
        if self._handler is not None:
            await self._handler.close_async()  # type: ignore[no-untyped-call]
