"""The emulator's App Home and Events API: views.publish driven by slack_sdk's real client and judged by Slack's
OpenAPI spec and its documentation (sandbox/slack_home.py), and Slack's event deliveries with their retries, received
by a stand-in app that verifies them with slack_sdk's own SignatureVerifier (sandbox/slack_events.py)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.serving import Listener, start, stop
from sandbox.slack_user import slack_user_app
from tests.contract.schemas import assert_slack
from tests.contract.slack_stage import ONCALL, Slack, api_error, slack_api
from tests.slack_spec import bot_scopes

HOME = {"type": "home", "callback_id": "home", "blocks": [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Fleet* · 7 services"}},
    {"type": "actions", "block_id": "rollout:7", "elements": [
        {"type": "button", "action_id": "rollout_rollback", "value": "7:1", "style": "danger",
         "text": {"type": "plain_text", "text": "Roll back"},
         "confirm": {"title": {"type": "plain_text", "text": "Roll back?"},
                     "text": {"type": "mrkdwn", "text": "All traffic back to `svc-00001-abc`."},
                     "confirm": {"type": "plain_text", "text": "Roll back"},
                     "deny": {"type": "plain_text", "text": "Cancel"}, "style": "danger"}},
        {"type": "button", "action_id": "rollout_pause", "value": "7:1", "text": {"type": "plain_text",
                                                                                  "text": "Pause"}}]}]}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


@pytest.fixture
async def slack() -> AsyncIterator[Slack]:
    emulator, listener = await slack_api(scopes=())  # views.publish needs no scope
    yield emulator
    await stop(listener)


@pytest.fixture
def client(slack: Slack) -> AsyncWebClient:
    return slack.client()


async def test_views_publish_answers_the_view_as_the_spec_and_page_give_it(client: AsyncWebClient) -> None:
    assert bot_scopes("views.publish") == set(), "the spec requires no scope"
    response = await client.views_publish(user_id=ONCALL, view=HOME)
    assert_slack("views.publish", response.data)
    view = response["view"]
    assert view["type"] == "home" and view["callback_id"] == "home" and view["blocks"][1]["block_id"] == "rollout:7"
    assert {"id", "hash", "state", "app_id", "bot_id", "root_view_id", "team_id"} <= set(view)
    again = (await client.views_publish(user_id=ONCALL, view=HOME, hash=view["hash"]))["view"]
    assert again["id"] == view["id"] and again["hash"] != view["hash"], "the same tab, a new state"


async def test_a_stale_hash_is_a_conflict(client: AsyncWebClient) -> None:
    first = (await client.views_publish(user_id=ONCALL, view=HOME))["view"]
    await client.views_publish(user_id=ONCALL, view=HOME)
    error = await api_error(client.views_publish(user_id=ONCALL, view=HOME, hash=first["hash"]))
    assert_slack("views.publish", error)
    assert error["error"] == "hash_conflict"


@pytest.mark.parametrize(("arguments", "pointer"), [
    ({"user_id": "U0NOBODY00", "view": HOME}, "invalid `user_id`"),
    ({"user_id": ONCALL, "view": {**HOME, "type": "modal"}}, "/view/type"),
    ({"user_id": ONCALL, "view": {**HOME, "blocks": [section("x")] * 101}}, "/view/blocks]"),
    ({"user_id": ONCALL, "view": {**HOME, "private_metadata": "x" * 3001}}, "/view/private_metadata"),
    ({"user_id": ONCALL, "view": {**HOME, "callback_id": "x" * 256}}, "/view/callback_id"),
    ({"user_id": ONCALL, "view": {**HOME, "blocks": [section("x" * 3001)]}}, "/view/blocks/0/text/text"),
    ({"user_id": ONCALL, "view": json.loads(json.dumps(HOME).replace('"Cancel"', '"' + "n" * 31 + '"'))},
     "/view/blocks/1/elements/0/confirm/deny/text"),
])
async def test_a_view_outside_the_documented_limits_is_refused(client: AsyncWebClient, arguments: dict[str, Any],
                                                              pointer: str) -> None:
    error = await api_error(client.views_publish(**arguments))
    assert_slack("views.publish", error)
    assert error["error"] == "invalid_arguments"
    assert any(pointer in message for message in error["response_metadata"]["messages"]), error


async def test_a_hundred_blocks_are_a_home_tab(client: AsyncWebClient) -> None:
    response = await client.views_publish(user_id=ONCALL, view={**HOME, "blocks": [section("x")] * 100})
    assert len(response["view"]["blocks"]) == 100


async def test_an_oversized_view_is_too_large(client: AsyncWebClient) -> None:
    blocks = [section("x" * 2900)] * 95
    error = await api_error(client.views_publish(user_id=ONCALL, view={**HOME, "blocks": blocks}))
    assert error["error"] == "view_too_large"


async def test_views_publish_is_tier_4(client: AsyncWebClient) -> None:
    """100 a minute with a burst of half that (sandbox/slack_limits.py): some call soon after the 150th is refused."""
    for _ in range(150):
        await client.views_publish(user_id=ONCALL, view=HOME)
    answers = await asyncio.gather(*(client.views_publish(user_id=ONCALL, view=HOME) for _ in range(10)),
                                   return_exceptions=True)
    refused = [a for a in answers if isinstance(a, SlackApiError)]
    assert refused and refused[0].response.status_code == 429 and refused[0].response["error"] == "ratelimited"


# --- Events API delivery ------------------------------------------------------------------------------


@dataclass
class EventsApp:
    """Verifies each delivery as Bolt does and answers from `answers` in turn (then 200)."""

    verifier: SignatureVerifier
    answers: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    seen: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.verifier.is_valid_request(body, dict(request.headers)):
            return web.Response(status=401)
        payload = json.loads(body)
        self.seen.append((payload, dict(request.headers)))
        self.arrived.set()
        if payload["type"] == "url_verification":
            return web.json_response({"challenge": payload["challenge"]})
        status, headers, delay = self.answers.pop(0) if self.answers else (200, {}, 0.0)
        await asyncio.sleep(delay)
        return web.Response(status=status, headers=headers)

    async def deliveries(self, count: int) -> list[tuple[dict[str, Any], dict[str, str]]]:
        while len(self.seen) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5)
        return self.seen


@dataclass
class Stage:
    app: EventsApp
    user_side: str


@pytest.fixture
async def stage(slack: Slack) -> AsyncIterator[Stage]:
    secret = secrets.token_hex(16)
    app = EventsApp(SignatureVerifier(secret))
    bot = web.Application()
    bot.router.add_post("/slack/events", app.handle)
    limits = slack.workspace.limits
    limits.event_ack_s, limits.event_retry_2_s, limits.event_retry_3_s = 0.5, 0.1, 0.1  # 3 s, 1 min, 5 min
    listener = await start(Listener("bot", bot))
    user_side = await start(Listener("slack_user", slack_user_app(slack.workspace, signing_secret=secret,
                                                                  bot_urls=[listener.url], api_url=slack.url)))
    yield Stage(app, user_side.url)
    await stop(user_side)
    await stop(listener)


async def open_home(stage: Stage, **spec: Any) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        answer: dict[str, Any] = (await http.post(f"{stage.user_side}/home", json={
            "user": "oncall", "wait_s": 0, **spec})).json()
    return answer


async def test_opening_the_home_tab_delivers_a_signed_app_home_opened_callback(stage: Stage) -> None:
    answer = await open_home(stage)
    assert (answer["status"], answer["error"], answer["view"]) == (200, None, None)
    ((payload, headers),) = stage.app.seen
    assert payload["type"] == "event_callback" and payload["event_id"] == answer["event_id"]
    assert {"token", "team_id", "api_app_id", "event_time", "authorizations", "event_context"} <= set(payload)
    event = payload["event"]
    assert (event["type"], event["user"], event["tab"]) == ("app_home_opened", ONCALL, "home")
    assert "view" not in event, "no view before the app ever published one"
    assert headers["Content-Type"] == "application/json" and "X-Slack-Retry-Num" not in headers


async def test_a_failed_delivery_is_retried_with_its_number_and_reason(stage: Stage) -> None:
    stage.app.answers = [(500, {}, 0.0), (200, {}, 1.0)]  # an error, then an answer past the 0.5 s allowed
    answer = await open_home(stage)
    assert (answer["status"], answer["error"]) == (500, "http_error")
    seen = await stage.app.deliveries(3)
    await asyncio.sleep(0.2)
    assert [h.get("X-Slack-Retry-Num") for _, h in seen] == [None, "1", "2"]
    assert [h.get("X-Slack-Retry-Reason") for _, h in seen] == [None, "http_error", "http_timeout"]
    assert len({p["event_id"] for p, _ in seen}) == 1, "one event, delivered again"


async def test_no_retry_when_the_app_says_so(stage: Stage) -> None:
    stage.app.answers = [(503, {"X-Slack-No-Retry": "1"}, 0.0)]
    answer = await open_home(stage)
    assert answer["status"] == 503
    await asyncio.sleep(0.3)
    assert len(stage.app.seen) == 1


async def test_forced_duplicates_come_as_retries_and_url_verification_echoes(stage: Stage) -> None:
    answer = await open_home(stage, duplicates=3, retry_reason="connection_failed")
    assert [d["retry"] for d in answer["deliveries"]] == [0, 1, 2, 3]
    assert [h.get("X-Slack-Retry-Reason") for _, h in stage.app.seen] == [None, *["connection_failed"] * 3]
    async with httpx.AsyncClient() as http:
        verified = (await http.post(f"{stage.user_side}/events/verify")).json()
    assert verified == {"verified": True, "status": 200, "error": None}
    assert stage.app.seen[-1][0]["type"] == "url_verification"
