"""The sandbox's Socket Mode (sandbox/slack_socket.py) as slack_sdk's own Socket Mode client sees it, unchanged:
`apps.connections.open` with the app-level token only, `hello`, envelopes acknowledged by `envelope_id`, an
unacknowledged event retried with `retry_attempt`, and a `disconnect` the client reconnects after
(https://docs.slack.dev/apis/events-api/using-socket-mode)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Config
from sandbox.slack_socket import app_token
from sandbox.world import World, WorldOptions


@pytest.fixture(scope="module")
async def socket_world(example_config: Config) -> AsyncIterator[World]:
    world = World(example_config, WorldOptions(socket_mode=True, start_ms=60, route_ms=20))
    await world.start()
    yield world
    await world.stop()


class Received:
    """What the client was sent, and which envelopes it leaves unacknowledged (by how often they came)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.requests: list[SocketModeRequest] = []
        self.ignore: Callable[[SocketModeRequest], bool] = lambda request: False

    async def on_message(self, client: Any, message: dict[str, Any], raw: str | None) -> None:
        self.messages.append(message)

    async def on_request(self, client: Any, request: SocketModeRequest) -> None:
        self.requests.append(request)
        if self.ignore(request):
            return
        payload = {"text": f"ack of {request.payload.get('command')}"} if request.type == "slash_commands" else None
        await client.send_socket_mode_response(SocketModeResponse(request.envelope_id, payload=payload))


@pytest.fixture(scope="module")
async def client(socket_world: World) -> AsyncIterator[tuple[SocketModeClient, Received]]:
    web = AsyncWebClient(base_url=socket_world.endpoints()["slack_api_url"])
    received = Received()
    sdk = SocketModeClient(app_token=socket_world.app_token, web_client=web)
    sdk.message_listeners.append(received.on_message)
    sdk.socket_mode_request_listeners.append(received.on_request)
    await sdk.connect()
    yield sdk, received
    await sdk.close()


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


async def test_apps_connections_open_takes_the_app_level_token_only(socket_world: World) -> None:
    api = socket_world.endpoints()["slack_api_url"]
    with pytest.raises(SlackApiError) as bot_token:
        await AsyncWebClient(base_url=api).apps_connections_open(app_token=socket_world.bot_token)
    assert bot_token.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as stranger:
        await AsyncWebClient(base_url=api).apps_connections_open(app_token=app_token())
    assert stranger.value.response["error"] == "invalid_auth"
    async with httpx.AsyncClient() as http:  # the token as a form field: "will result in an error"
        answer = await http.post(f"{api}apps.connections.open", data={"token": socket_world.app_token})
    assert answer.json() == {"ok": False, "error": "not_authed"}


async def test_hello_then_a_slash_command_as_an_envelope_whose_ack_the_user_sees(
        socket_world: World, client: tuple[SocketModeClient, Received]) -> None:
    _, received = client
    await until(lambda: any(m.get("type") == "hello" for m in received.messages))
    hello = next(m for m in received.messages if m.get("type") == "hello")
    assert hello["num_connections"] == 1 and hello["connection_info"]["app_id"] == "A07CHATOPS1"
    assert hello["debug_info"]["approximate_connection_time"] > 0
    async with httpx.AsyncClient(timeout=10) as http:
        answer = (await http.post(f"{socket_world.url('slack_user')}/commands", json={
            "user": "oncall", "channel": "deploys", "command": "/health", "text": "all"})).json()
        seen = (await http.get(f"{socket_world.url('slack_user')}/messages",
                               params={"channel": "deploys", "user": "oncall"})).json()
    assert answer["status"] == 200 and answer["error"] is None
    (request,) = [r for r in received.requests if r.type == "slash_commands"]
    assert request.accepts_response_payload is True
    assert request.payload["command"] == "/health" and request.payload["text"] == "all"
    assert request.payload["response_url"] == answer["response_url"]
    assert any(m["text"] == "ack of /health" for m in seen), "the ack's payload is what the user sees"


async def test_an_event_not_acknowledged_within_3_s_comes_again_with_retry_attempt(
        socket_world: World, client: tuple[SocketModeClient, Received]) -> None:
    _, received = client
    received.ignore = lambda request: request.type == "events_api" and not request.retry_attempt
    event = {"type": "event_callback", "event_id": "Ev0SOCKET1", "event": {"type": "app_home_opened"}}
    first = await socket_world.socket_mode.deliver("events_api", event)
    assert first.error == "operation_timeout" and first.ack_ms >= 3000
    await until(lambda: len([r for r in received.requests if r.type == "events_api"]) == 2)
    original, retry = [r for r in received.requests if r.type == "events_api"]
    assert retry.envelope_id == original.envelope_id and retry.payload == event
    assert (original.retry_attempt, retry.retry_attempt, retry.retry_reason) == (0, 1, "timeout")


async def test_a_refresh_is_followed_by_a_new_connection_that_gets_the_next_envelope(
        socket_world: World, client: tuple[SocketModeClient, Received]) -> None:
    sdk, received = client
    old = sdk.current_session
    assert await socket_world.socket_mode.disconnect("refresh_requested") == 1
    await until(lambda: sdk.current_session is not old and socket_world.socket_mode.connections == 1)
    ack = await socket_world.socket_mode.deliver("interactive", {"type": "block_actions", "actions": []})
    assert ack.error is None
    assert old is not None and old.closed, "the client closed the connection it was told to leave"
    assert received.requests[-1].type == "interactive"


async def test_in_socket_mode_a_forged_signature_is_refused_by_the_user_side_not_silently_dropped(
        socket_world: World) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{socket_world.url('slack_user')}/commands", json={
            "user": "oncall", "channel": "deploys", "command": "/health", "signature": "v0=" + "0" * 64})
    assert answer.status_code == 400 and "nothing is signed" in answer.json()["error"]
