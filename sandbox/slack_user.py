"""Slack's user side: the people of the workspace typing slash commands and clicking buttons, Slack
delivering those to the bot exactly as it does (signed form posts to `<bot>/slack/events`, 3 s to answer),
and what each person then sees. The bot URLs are used round-robin, as a load balancer would.

    POST /commands     {"user": "oncall", "channel": "deploys", "command": "/health", "text": "all"}
    POST /actions      {"user", "channel", "message_ts", "action_id", "value"?, "block_id"?, "confirmed"?}
                       clicks the button with that action_id (and value / block_id, if given, to pick
                       between buttons sharing an action_id) in a message or ephemeral the user sees. A
                       button with a `confirm` object opens its dialog first and sends nothing until the
                       person presses the dialog's confirm button (https://docs.slack.dev/reference/block-kit/
                       composition-objects/confirmation-dialog-object): without `"confirmed": true` the click
                       is answered 409 `confirmation_required` with the dialog, undelivered
    POST /actions      {"user", "view": "home", "action_id", "value"?, "block_id"?, "confirmed"?}
                       clicks a button in the person's Home tab (sandbox/slack_events.py)
    POST /home, GET /home   opens / shows the person's Home tab (sandbox/slack_events.py)
    /views...          modals: sandbox/slack_modals.py
    POST /messages     {"user", "channel", "text", "thread_ts"?}: a person posts in a channel
    GET  /messages?channel=&user=   all the person sees there, in ts order (Workspace.seen_by)
    POST /response/<id>   the response_url handed to the bot: 5 posts within 30 minutes (the `slack` limits)
    POST /socket/disconnect  {"reason": "refresh_requested" | "warning" | "link_disabled"}: in Socket Mode,
                       Slack tells the app's connections to go (slack_socket.py); answers {"ok", "told": n}
    GET  /users, GET /channels, GET /   names and ids, and where everything is

Users and channels are given by name or id. /commands and /actions also take, to test the bot's request
verification, "timestamp" (replaces X-Slack-Request-Timestamp, and is what gets signed) and "signature"
(replaces X-Slack-Signature). Both answer

    {"status": <bot's HTTP status, 0 if unreachable or too slow>, "ack_ms": float, "body": <bot's body>,
     "response_url": str, "error": null | "operation_timeout" | "dispatch_failed" | <Slack error code>}

For a command, a JSON (or plain text) body is shown as Slack shows it: ephemeral to the invoker unless
`"response_type": "in_channel"`. A failed command shows the invoker Slackbot's
`/cmd failed with the error "..."`, as Slack does.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web

from sandbox.slack_api import message_json
from sandbox.slack_errors import SlackError
from sandbox.slack_events import EventDelivery, Unclickable, home_click
from sandbox.slack_modals import modal_routes
from sandbox.slack_signing import sign
from sandbox.slack_socket import DISCONNECT_REASONS, SocketMode, ack_body
from sandbox.slack_views import views_of
from sandbox.slack_workspace import APP_ID, SLACKBOT, Channel, Json, Message, User, Workspace

VERIFICATION_TOKEN = "sandboxVerificationTkn01"  # deprecated by Slack, still sent; not a secret
USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"
ACK_TIMEOUT_S = 3.0

WORKSPACE = web.AppKey("workspace", Workspace)
SIGNING_SECRET = web.AppKey("signing_secret", str)
BOT_URLS = web.AppKey("bot_urls", Iterator[str])
DESCRIPTION = web.AppKey("description", dict[str, Any])
SESSION = web.AppKey("session", aiohttp.ClientSession)
EVENTS = web.AppKey("events", EventDelivery)
SOCKET_MODE = web.AppKey("socket_mode", SocketMode)


class _Refused(Exception):
    """A request the emulated person cannot make: unknown user, channel, message or button."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


@dataclass
class _Delivery:
    status: int
    ack_ms: float
    body: str
    error: str | None


def slack_user_app(workspace: Workspace, *, signing_secret: str, bot_urls: Sequence[str],
                   api_url: str, socket_mode: SocketMode | None = None) -> web.Application:
    """With `socket_mode` enabled, commands and clicks go over the app's WebSocket (slack_socket.py) instead."""
    app = web.Application(middlewares=[_refusals])
    app[WORKSPACE] = workspace
    if socket_mode is not None:
        app[SOCKET_MODE] = socket_mode
    app[SIGNING_SECRET] = signing_secret
    app[BOT_URLS] = itertools.cycle(bot_urls)
    app[DESCRIPTION] = {"team_id": workspace.team_id, "team_domain": workspace.team_domain,
                        "api_url": f"{api_url}/api/", "bot_urls": list(bot_urls)}
    app.cleanup_ctx.append(_session)
    app.router.add_get("/", _describe)
    app.router.add_post("/commands", _command)
    app.router.add_post("/actions", _action)
    app.router.add_post("/messages", _say)
    app.router.add_get("/messages", _messages)
    app.router.add_post("/response/{id}", _response)
    app.router.add_post("/socket/disconnect", _socket_disconnect)
    app.router.add_get("/users", _users)
    app.router.add_get("/channels", _channels)
    urls = app[BOT_URLS]
    events = EventDelivery(workspace, signing_secret, token=VERIFICATION_TOKEN, next_url=lambda: next(urls, None),
                           session=lambda: app[SESSION], socket=lambda envelope: _event_over_socket(app, envelope))
    app[EVENTS] = events
    app.on_cleanup.append(events.close)
    app.router.add_post("/home", events.open_home)
    app.router.add_get("/home", events.home_of)
    app.router.add_post("/events/verify", events.verify_url)
    app.add_routes(modal_routes(workspace, lambda body, spec: _deliver(app, body, spec, _interactive(body)),
                                VERIFICATION_TOKEN))
    return app


async def _session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ACK_TIMEOUT_S)) as session:
        app[SESSION] = session
        yield


@web.middleware
async def _refusals(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except _Refused as refused:
        return web.json_response({"ok": False, "error": refused.error}, status=refused.status)


# --- what people do -------------------------------------------------------------------------------------


async def _command(request: web.Request) -> web.Response:
    workspace = request.app[WORKSPACE]
    spec = await _spec(request)
    user, channel = _user(workspace, spec), _channel(workspace, spec)
    command = str(spec.get("command", ""))
    if not command.startswith("/"):
        raise _Refused(400, "command must start with /")
    url_id = workspace.open_response_url(channel.id, user.id)
    response_url = f"{request.url.origin()}/response/{url_id}"
    form = {
        "token": VERIFICATION_TOKEN, "team_id": workspace.team_id, "team_domain": workspace.team_domain,
        "channel_id": channel.id, "channel_name": channel.name, "user_id": user.id, "user_name": user.name,
        "command": command, "text": str(spec.get("text", "")), "api_app_id": APP_ID,
        "is_enterprise_install": "false", "response_url": response_url,
        "trigger_id": views_of(workspace).trigger(user.id),
    }
    delivery = await _deliver(request.app, urlencode(form), spec, ("slash_commands", form))
    error = delivery.error or _show_ack(workspace, url_id, delivery.body)
    if error is not None:
        workspace.post_ephemeral(channel.id, user.id, f'{command} failed with the error "{error}"',
                                 sender=SLACKBOT.id)
    return _answer(delivery, response_url, error)


async def _action(request: web.Request) -> web.Response:
    workspace = request.app[WORKSPACE]
    spec = await _spec(request)
    if spec.get("view") == "home":
        return await _home_action(request, spec)
    user, channel = _user(workspace, spec), _channel(workspace, spec)
    try:
        message = workspace.clickable(channel.id, str(spec.get("message_ts", "")), user.id)
    except SlackError:
        raise _Refused(404, "message_not_found") from None
    block_id, button, attachment = _button(message, spec)
    dialog = button.get("confirm")
    if isinstance(dialog, dict) and spec.get("confirmed") is not True:
        return web.json_response({"status": 0, "ack_ms": 0.0, "body": "", "response_url": None,
                                  "error": "confirmation_required", "confirm": dialog}, status=409)
    url_id = workspace.open_response_url(channel.id, user.id, original=message.ts)
    response_url = f"{request.url.origin()}/response/{url_id}"
    is_ephemeral = message.ephemeral_to is not None
    container: Json = {"type": "message", "message_ts": message.ts, "channel_id": channel.id,
                       "is_ephemeral": is_ephemeral}
    if attachment:  # a button drawn inside an attachment's blocks, as Slack reports it
        container.update(type="message_attachment", attachment_id=attachment, is_app_unfurl=False)
    if message.thread_ts:
        container["thread_ts"] = message.thread_ts
    action = {"action_id": button["action_id"], "block_id": block_id, "text": button["text"],
              "value": button.get("value"), "type": "button", "action_ts": f"{time.time():.6f}"}
    if "style" in button:
        action["style"] = button["style"]
    payload: Json = {
        "type": "block_actions",
        "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": workspace.team_id},
        "api_app_id": APP_ID, "token": VERIFICATION_TOKEN, "container": container,
        "trigger_id": views_of(workspace).trigger(user.id),
        "team": {"id": workspace.team_id, "domain": workspace.team_domain},
        "enterprise": None, "is_enterprise_install": False,
        "channel": {"id": channel.id, "name": channel.name},
        "state": {"values": {}}, "response_url": response_url,
        "actions": [{k: v for k, v in action.items() if v is not None}],
    }
    if not is_ephemeral:  # Slack sends no `message` for a click in an ephemeral message
        payload["message"] = message_json(workspace, message)
    delivery = await _deliver(request.app, urlencode({"payload": json.dumps(payload)}), spec,
                              ("interactive", payload))
    return _answer(delivery, response_url, delivery.error, confirmed=dialog if isinstance(dialog, dict) else None)


async def _home_action(request: web.Request, spec: Json) -> web.Response:
    """A click in the person's Home tab (sandbox/slack_events.py): no channel, message or response_url."""
    try:
        payload = home_click(request.app[WORKSPACE], _user(request.app[WORKSPACE], spec), spec,
                             token=VERIFICATION_TOKEN)
    except Unclickable as refused:
        raise _Refused(refused.status, refused.error) from None
    delivery = await _deliver(request.app, urlencode({"payload": json.dumps(payload)}), spec,
                              ("interactive", payload))
    return _answer(delivery, "", delivery.error)


async def _say(request: web.Request) -> web.Response:
    workspace = request.app[WORKSPACE]
    spec = await _spec(request)
    user, channel = _user(workspace, spec), _channel(workspace, spec)
    thread_ts = spec.get("thread_ts")
    try:
        message = workspace.post(channel.id, user.id, str(spec.get("text", "")),
                                 thread_ts=str(thread_ts) if thread_ts else None)
    except SlackError as error:
        raise _Refused(400, error.error) from None
    return web.json_response({"ok": True, "channel": channel.id, "ts": message.ts})


async def _response(request: web.Request) -> web.Response:
    """The response_url: JSON in, `{"ok": true}` out, Slack's error codes otherwise. A spent or expired URL is
    refused 404: Slack documents the limit, not its answer (assumption, as for an unknown URL)."""
    try:
        payload = json.loads(await request.text())
    except json.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        raise _Refused(400, "invalid_payload")
    try:
        request.app[WORKSPACE].respond(request.match_info["id"], payload)
    except SlackError as error:
        raise _Refused(404 if error.error in ("no_service", "used_url", "expired_url") else 400,
                       error.error) from None
    return web.json_response({"ok": True})


async def _socket_disconnect(request: web.Request) -> web.Response:
    socket_mode = request.app.get(SOCKET_MODE)
    if socket_mode is None:
        raise _Refused(404, "this Slack has no Socket Mode")
    reason = str((await _spec(request)).get("reason", "refresh_requested"))
    if reason not in DISCONNECT_REASONS:
        raise _Refused(400, f"reason must be one of {', '.join(DISCONNECT_REASONS)}")
    return web.json_response({"ok": True, "told": await socket_mode.disconnect(reason)})


# --- what people see ------------------------------------------------------------------------------------


async def _messages(request: web.Request) -> web.Response:
    workspace = request.app[WORKSPACE]
    spec = dict(request.query)
    return web.json_response(workspace.seen_by(_channel(workspace, spec).id, _user(workspace, spec).id))


async def _users(request: web.Request) -> web.Response:
    users = request.app[WORKSPACE].users.values()
    return web.json_response([{"id": u.id, "name": u.name, "real_name": u.real_name, "is_bot": u.is_bot}
                              for u in users])


async def _channels(request: web.Request) -> web.Response:
    channels = request.app[WORKSPACE].channels.values()
    return web.json_response([{"id": c.id, "name": c.name} for c in channels])


async def _describe(request: web.Request) -> web.Response:
    return web.json_response(request.app[DESCRIPTION])


# --- delivery -------------------------------------------------------------------------------------------


def _interactive(body: str) -> tuple[str, Json]:
    """The Socket Mode envelope of an interaction posted as `payload=<json>`: the same payload, unsigned."""
    payload: Json = json.loads(dict(parse_qsl(body))["payload"])
    return "interactive", payload


async def _event_over_socket(app: web.Application, envelope: Json) -> tuple[int, float, str | None] | None:
    """An Events API envelope over the app's WebSocket when it is in Socket Mode; None over HTTP."""
    socket_mode = app.get(SOCKET_MODE)
    if socket_mode is None or not socket_mode.enabled:
        return None
    ack = await socket_mode.deliver("events_api", envelope)
    return (0 if ack.error else 200), ack.ack_ms, ack.error


async def _deliver(app: web.Application, body: str, spec: Mapping[str, Any],
                   envelope: tuple[str, Json]) -> _Delivery:
    """Sign and post to the next bot URL; a bot that is down or slower than 3 s gets status 0. In Socket Mode,
    the `envelope` (its type and payload) goes over the app's WebSocket instead: status 200 once acknowledged."""
    socket_mode = app.get(SOCKET_MODE)
    if socket_mode is not None and socket_mode.enabled:
        if "signature" in spec or "timestamp" in spec:
            raise _Refused(400, "in Socket Mode nothing is signed: a forged signature or timestamp has nowhere to go")
        ack = await socket_mode.deliver(*envelope)
        return _Delivery(0 if ack.error else 200, ack.ack_ms, ack_body(ack), ack.error)
    timestamp = str(spec.get("timestamp", int(time.time())))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": USER_AGENT,
        "Accept": "application/json,*/*",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": str(spec.get("signature") or sign(app[SIGNING_SECRET], timestamp, body)),
    }
    bot_urls = app[BOT_URLS]
    url = next(bot_urls, None)
    if url is None:
        return _Delivery(0, 0.0, "", "dispatch_failed")
    started = time.perf_counter()
    try:
        async with app[SESSION].post(f"{url}/slack/events", data=body.encode(), headers=headers) as response:
            text = await response.text()
    except TimeoutError:
        return _Delivery(0, _ms_since(started), "", "operation_timeout")
    except aiohttp.ClientError:
        return _Delivery(0, _ms_since(started), "", "dispatch_failed")
    return _Delivery(response.status, _ms_since(started), text,
                     None if response.status == 200 else "dispatch_failed")


def _show_ack(workspace: Workspace, url_id: str, body: str) -> str | None:
    """Show a slash command's HTTP answer; returns the error the invoker sees if Slack refuses it."""
    if not body.strip():
        return None
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        payload = {"text": body}
    try:
        workspace.acknowledge(url_id, payload if isinstance(payload, dict) else {"text": body})
    except SlackError as error:
        return error.error
    return None


def _answer(delivery: _Delivery, response_url: str, error: str | None, *,
            confirmed: Json | None = None) -> web.Response:
    """`confirmed`: the dialog the person confirmed before the click went out, so a test can read what it said."""
    answer: Json = {"status": delivery.status, "ack_ms": round(delivery.ack_ms, 3), "body": delivery.body,
                    "response_url": response_url, "error": error}
    return web.json_response(answer | ({"confirm": confirmed} if confirmed else {}))


# --- reading requests -----------------------------------------------------------------------------------


async def _spec(request: web.Request) -> Json:
    try:
        spec = json.loads(await request.text())
    except json.JSONDecodeError:
        spec = None
    if not isinstance(spec, dict):
        raise _Refused(400, "expected a JSON object")
    return spec


def _user(workspace: Workspace, spec: Mapping[str, Any]) -> User:
    try:
        return workspace.lookup_user(str(spec.get("user", "")))
    except KeyError:
        raise _Refused(404, f"no user {spec.get('user')!r}") from None


def _channel(workspace: Workspace, spec: Mapping[str, Any]) -> Channel:
    try:
        return workspace.lookup_channel(str(spec.get("channel", "")))
    except KeyError:
        raise _Refused(404, f"no channel {spec.get('channel')!r}") from None


def _button(message: Message, spec: Mapping[str, Any]) -> tuple[str, Json, int]:
    """The block_id and button with this action_id (and value or block_id, if the click names them), and the
    1-based attachment holding it (0 when it is in the message's own blocks)."""
    places = [(0, message.blocks or [])]
    places += [(index, a.get("blocks") or []) for index, a in enumerate(message.attachments or [], start=1)]
    for attachment, blocks in places:
        for block in blocks:
            elements = block.get("elements", []) if block["type"] == "actions" else [block.get("accessory")]
            for element in elements:
                if (isinstance(element, dict) and element.get("type") == "button"
                        and element.get("action_id") == spec.get("action_id")
                        and spec.get("value") in (None, element.get("value"))
                        and spec.get("block_id") in (None, block.get("block_id"))):
                    return str(block.get("block_id", "")), element, attachment
    raise _Refused(404, f"no button {spec.get('action_id')!r} in message {message.ts}")


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
