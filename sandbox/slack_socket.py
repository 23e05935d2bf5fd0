"""Slack's Socket Mode: the app opens a WebSocket to Slack and Slack sends it, instead of HTTP posts to the app's
URLs, the slash commands, clicks and events people cause, each as an envelope the app acknowledges.

From "Using Socket Mode" (https://docs.slack.dev/apis/events-api/using-socket-mode, also
https://api.slack.com/apis/connections/socket-implement):

- `apps.connections.open` takes an app-level token "in the HTTP Authorization header of your request; passing it
  as a POST parameter will result in an error" (https://docs.slack.dev/reference/methods/apps.connections.open),
  and answers `{"ok": true, "url": "wss://wss.slack.com/link/?ticket=...&app_id=..."}`; here `ws://127.0.0.1:<api
  port>/link/?ticket=...&app_id=...`. The token needs `connections:write`
  (https://api.slack.com/scopes/connections:write). A bot token is refused `not_allowed_token_type`, as Slack
  answers Socket Mode clients given an `xoxb-` token (https://github.com/slackapi/python-slack-sdk/issues/1239,
  https://github.com/slackapi/node-slack-sdk/issues/1851); an unknown token `invalid_auth`, none `not_authed`.
  The method is Tier 1 (slack_limits.py).
- On connecting, Slack sends `hello` with `connection_info.app_id`, `num_connections` and `debug_info` (host,
  started, build_number, `approximate_connection_time` in seconds: how long until Slack refreshes the connection;
  `&debug_reconnects=true` on the URL makes that 360 s).
- Each payload is an envelope `{"payload", "envelope_id", "type", "accepts_response_payload"}` with type
  `slash_commands`, `interactive` or `events_api`; the docs' examples accept a response payload for the first two
  and not for events. The app acknowledges with `{"envelope_id": ..., "payload": ...?}`; a command's ack payload is
  shown to the user as an HTTP answer's body is (the docs' example answers a command with blocks).
- "Socket Mode allows your app to maintain up to 10 open WebSocket connections at the same time. When multiple
  connections are active, each payload may be sent to any of the connections": here round-robin.
- Disconnects: `{"type": "disconnect", "reason": "link_disabled"}` when Socket Mode is turned off, `warning` "about
  10 seconds before the disconnect", and `refresh_requested` "once every few hours". An eleventh connection gets
  `too_many_websockets` (the reason slackapi's node SDK handles, https://github.com/slackapi/node-slack-sdk/pull/1762).

Slack waits 3 s for an ack ("you only have 3 seconds to respond",
https://docs.slack.dev/tools/bolt-python/concepts/acknowledge). An unacknowledged event is retried as the Events
API retries, "immediately, after 1 minute, after 5 minutes" (https://docs.slack.dev/apis/events-api/#retries),
with `retry_attempt` and `retry_reason` on the envelope (the fields slack_sdk's SocketModeRequest reads for
events_api). A command or click is not retried: its user sees it fail, as over HTTP.

Assumptions, where the docs are silent: a ticket opens one connection and expires after TICKET_LIFETIME_S; a token
sent as a form field is `not_authed`; the retry reason is `timeout`; a connection told to disconnect gets no more
envelopes and is closed by Slack DISCONNECT_GRACE_S later if the app has not closed it; nothing is delivered to a
connection before its `hello`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import WSMsgType, web

from sandbox.slack_errors import SlackError
from sandbox.slack_workspace import APP_ID, Json

OPEN_METHOD = "apps.connections.open"
LINK_PATH = "/link/"
MAX_CONNECTIONS = 10
ACK_TIMEOUT_S = 3.0
TICKET_LIFETIME_S = 60.0
CONNECTION_TIME_S = 18060
"""`approximate_connection_time` as Slack's hello gives it (18060 s in slack-go's recorded hello,
https://github.com/slack-go/slack/blob/master/socketmode/socket_mode_event_test.go)."""
DEBUG_CONNECTION_TIME_S = 360
WARNING_S = 10.0
DISCONNECT_GRACE_S = 10.0
EVENT_RETRIES_S = (0.0, 60.0, 300.0)
DISCONNECT_REASONS = ("refresh_requested", "warning", "link_disabled")
ACCEPTS_RESPONSE = {"slash_commands": True, "interactive": True, "events_api": False}


def app_token() -> str:
    """An app-level token shaped as Slack's: `xapp-1-<app id>-<number>-<64 hex>`; made at run time, never stored."""
    return f"xapp-1-{APP_ID}-{secrets.randbelow(10**13):013d}-{secrets.token_hex(32)}"


@dataclass
class Ack:
    """What came back for an envelope: the payload of its ack, or the error its sender sees."""

    payload: Json | None
    ack_ms: float
    error: str | None = None


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    leaving: bool = False
    waiting: dict[str, asyncio.Future[Json | None]] = field(default_factory=dict)


class SocketMode:
    """The app's Socket Mode side of Slack: its app-level token, the tickets issued, the connections open."""

    def __init__(self, token: str, *, bot_token: str, enabled: bool) -> None:
        self.enabled = enabled
        self._token = token
        self._bot_token = bot_token
        self._tickets: dict[str, float] = {}  # ticket -> when it expires
        self._connections: list[_Connection] = []
        self._turn = itertools.count()
        self._started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        self._tasks: set[asyncio.Task[None]] = set()
        self.envelopes: list[Json] = []
        """Every envelope sent, retries included, for tests and the console."""

    @property
    def connections(self) -> int:
        return sum(1 for c in self._connections if not c.leaving)

    # --- apps.connections.open ------------------------------------------------------------------------

    def authenticate(self, request: web.Request) -> None:
        """`apps.connections.open` takes only the app-level token, and only in the Authorization header."""
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if not token:
            raise SlackError("not_authed")
        if secrets.compare_digest(token, self._bot_token):
            raise SlackError("not_allowed_token_type")
        if not secrets.compare_digest(token, self._token):
            raise SlackError("invalid_auth")

    def open(self, request: web.Request) -> Json:
        """A URL with a fresh ticket, on the host the method was called at."""
        ticket = str(uuid.uuid4())
        self._tickets[ticket] = time.monotonic() + TICKET_LIFETIME_S
        origin = str(request.url.origin()).replace("http://", "ws://", 1)
        return {"url": f"{origin}{LINK_PATH}?ticket={ticket}&app_id={APP_ID}"}

    # --- the WebSocket ----------------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if time.monotonic() > self._tickets.pop(request.query.get("ticket", ""), 0.0):  # unknown, spent or expired
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)  # assumption
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        connection = _Connection(ws)
        if self.connections >= MAX_CONNECTIONS:
            await ws.send_json({"type": "disconnect", "reason": "too_many_websockets",
                                "debug_info": self._debug_info()})
            await ws.close()
            return ws
        self._connections.append(connection)
        lifetime = DEBUG_CONNECTION_TIME_S if request.query.get("debug_reconnects") == "true" else CONNECTION_TIME_S
        await ws.send_json({"type": "hello", "num_connections": self.connections,
                            "debug_info": {**self._debug_info(), "started": self._started, "build_number": 1,
                                           "approximate_connection_time": lifetime},
                            "connection_info": {"app_id": APP_ID}})
        self._spawn(self._refresh_after(connection, lifetime))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._acknowledged(connection, message.data)
        finally:
            self._gone(connection)
        return ws

    def _acknowledged(self, connection: _Connection, data: str) -> None:
        """An ack for an envelope sent on this connection; anything else the app sends is ignored."""
        with contextlib.suppress(ValueError):
            ack = json.loads(data)
            if isinstance(ack, dict):
                waiting = connection.waiting.get(str(ack.get("envelope_id")))
                if waiting is not None and not waiting.done():
                    payload = ack.get("payload")
                    waiting.set_result(payload if isinstance(payload, dict) else None)

    def _gone(self, connection: _Connection) -> None:
        if connection in self._connections:
            self._connections.remove(connection)
        for waiting in connection.waiting.values():
            if not waiting.done():
                waiting.set_exception(ConnectionResetError("the connection closed before its ack"))

    def _debug_info(self) -> Json:
        return {"host": "applink-sandbox-1"}

    # --- disconnects ------------------------------------------------------------------------------------

    async def disconnect(self, reason: str = "refresh_requested") -> int:
        """Tell every open connection to go (`refresh_requested`, `warning` then `refresh_requested` WARNING_S
        later, or `link_disabled`, which also turns Socket Mode off); returns how many were told."""
        told = [c for c in self._connections if not c.leaving]
        if reason == "link_disabled":
            self.enabled = False
        for connection in told:
            if reason == "warning":
                await connection.ws.send_json({"type": "disconnect", "reason": "warning",
                                               "debug_info": self._debug_info()})
                self._spawn(self._leave_later(connection, WARNING_S, "refresh_requested"))
            else:
                await self._leave(connection, reason)
        return len(told)

    async def _refresh_after(self, connection: _Connection, lifetime_s: float) -> None:
        await asyncio.sleep(lifetime_s)
        if not connection.ws.closed and not connection.leaving:
            await self._leave(connection, "refresh_requested")

    async def _leave_later(self, connection: _Connection, delay_s: float, reason: str) -> None:
        await asyncio.sleep(delay_s)
        if not connection.ws.closed and not connection.leaving:
            await self._leave(connection, reason)

    async def _leave(self, connection: _Connection, reason: str) -> None:
        connection.leaving = True
        with contextlib.suppress(ConnectionError, RuntimeError):
            await connection.ws.send_json({"type": "disconnect", "reason": reason, "debug_info": self._debug_info()})
        self._spawn(self._close_later(connection))

    async def _close_later(self, connection: _Connection) -> None:
        await asyncio.sleep(DISCONNECT_GRACE_S)
        await connection.ws.close()

    # --- delivery ---------------------------------------------------------------------------------------

    async def deliver(self, kind: str, payload: Json) -> Ack:
        """Send one envelope to one open connection and wait up to ACK_TIMEOUT_S for its ack. An event not acked
        is retried in the background (EVENT_RETRIES_S); the first attempt's outcome is returned."""
        envelope_id = str(uuid.uuid4())
        ack = await self._attempt(kind, payload, envelope_id, None)
        if kind == "events_api" and ack.error is not None:
            self._spawn(self._retry(payload, envelope_id))
        return ack

    async def _retry(self, payload: Json, envelope_id: str) -> None:
        for attempt, delay in enumerate(EVENT_RETRIES_S, start=1):
            await asyncio.sleep(delay)
            if (await self._attempt("events_api", payload, envelope_id, attempt)).error is None:
                return

    async def _attempt(self, kind: str, payload: Json, envelope_id: str, retry: int | None) -> Ack:
        started = time.perf_counter()
        open_now = [c for c in self._connections if not c.leaving and not c.ws.closed]
        if not self.enabled or not open_now:
            return Ack(None, 0.0, "dispatch_failed")  # assumption: as an HTTP app that cannot be reached
        connection = open_now[next(self._turn) % len(open_now)]
        envelope: Json = {"envelope_id": envelope_id, "payload": payload, "type": kind,
                          "accepts_response_payload": ACCEPTS_RESPONSE[kind]}
        if kind == "events_api":
            envelope |= {"retry_attempt": retry or 0, "retry_reason": "timeout" if retry else ""}
        waiting: asyncio.Future[Json | None] = asyncio.get_running_loop().create_future()
        connection.waiting[envelope_id] = waiting
        self.envelopes.append(envelope)
        try:
            await connection.ws.send_json(envelope)
            acked = await asyncio.wait_for(waiting, ACK_TIMEOUT_S)
        except (TimeoutError, ConnectionError, RuntimeError):
            return Ack(None, _ms_since(started), "operation_timeout")
        finally:
            connection.waiting.pop(envelope_id, None)
        return Ack(acked, _ms_since(started))

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for connection in list(self._connections):
            await connection.ws.close()


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000



def register(app: web.Application, socket_mode: SocketMode) -> None:
    """The WebSocket endpoint, on the Web API's host as a link of Slack's is on wss.slack.com."""
    app.router.add_get(LINK_PATH, socket_mode.websocket)


def ack_body(ack: Ack) -> str:
    """An ack's payload as the body of the HTTP answer it stands for."""
    return json.dumps(ack.payload) if ack.payload else ""

