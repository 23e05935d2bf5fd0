"""Slack's user side of modals (sandbox/slack_modals.py) against a stand-in bot that checks Slack's signature: the
payloads it receives and what the person then sees, for each answer Slack documents
(https://docs.slack.dev/surfaces/modals, https://docs.slack.dev/reference/interaction-payloads/
view-interactions-payload, https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from sandbox.serving import Listener, start, stop
from sandbox.slack_user import slack_user_app
from sandbox.slack_views import views_of
from tests.contract.slack_stage import ONCALL, Slack, slack_api


@dataclass
class Bot:
    verifier: SignatureVerifier
    answer: Any = None
    delay_s: float = 0.0
    payloads: list[dict[str, Any]] = field(default_factory=list)

    async def events(self, request: web.Request) -> web.Response:
        body = await request.text()
        assert self.verifier.is_valid_request(body, dict(request.headers)), "Slack signs every interaction"
        self.payloads.append(json.loads(dict(parse_qsl(body))["payload"]))
        await asyncio.sleep(self.delay_s)
        return web.json_response(self.answer) if self.answer is not None else web.Response()


@dataclass
class Stage:
    slack: Slack
    bot: Bot
    url: str

    async def open(self, view: dict[str, Any]) -> str:
        opened = await self.slack.client().views_open(trigger_id=views_of(self.slack.workspace).trigger(ONCALL),
                                                      view=view)
        return str(opened["view"]["id"])

    async def do(self, path: str, **spec: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as http:
            answer: dict[str, Any] = (await http.post(f"{self.url}/views/{path}",
                                                      json={"user": "oncall", **spec})).json()
        return answer


@pytest.fixture
async def stage() -> AsyncIterator[Stage]:
    slack, api = await slack_api()
    secret = secrets.token_hex(16)
    bot = Bot(SignatureVerifier(secret))
    app = web.Application()
    app.router.add_post("/slack/events", bot.events)
    bot_listener = await start(Listener("bot", app))
    user_side = await start(Listener("slack_user", slack_user_app(
        slack.workspace, signing_secret=secret, bot_urls=[bot_listener.url], api_url=slack.url)))
    yield Stage(slack, bot, user_side.url)
    for listener in (user_side, bot_listener, api):
        await stop(listener)


def form(title: str = "Deploy", **extra: Any) -> dict[str, Any]:
    return {"type": "modal", "callback_id": "form", "title": {"type": "plain_text", "text": title},
            "submit": {"type": "plain_text", "text": "Go"}, **extra, "blocks": [
                {"type": "input", "block_id": "tag", "label": {"type": "plain_text", "text": "Tag"},
                 "element": {"type": "plain_text_input", "action_id": "typed"}},
                {"type": "input", "block_id": "svc", "label": {"type": "plain_text", "text": "Service"},
                 "element": {"type": "external_select", "action_id": "pick", "min_query_length": 2}}]}


def options(count: int) -> dict[str, Any]:
    return {"options": [{"text": {"type": "plain_text", "text": f"svc-{i}"}, "value": f"svc-{i}"}
                        for i in range(count)]}


async def fill_in(stage: Stage) -> None:
    stage.bot.answer = options(3)
    offered = await stage.do("suggest", block_id="svc", action_id="pick", value="sv")
    assert [o["value"] for o in offered["options"]] == ["svc-0", "svc-1", "svc-2"]
    await stage.do("fill", block_id="svc", action_id="pick", value="svc-1")
    await stage.do("fill", block_id="tag", action_id="typed", value="v3")


async def test_type_ahead_asks_the_app_once_enough_is_typed_and_refuses_over_100_options(stage: Stage) -> None:
    await stage.open(form())
    stage.bot.answer = options(3)
    too_short = await stage.do("suggest", block_id="svc", action_id="pick", value="s")
    assert too_short["options"] == [] and stage.bot.payloads == [], "min_query_length: nothing is sent"
    await stage.do("suggest", block_id="svc", action_id="pick", value="sv")
    [asked] = stage.bot.payloads
    assert (asked["type"], asked["action_id"], asked["block_id"], asked["value"]) == (
        "block_suggestion", "pick", "svc", "sv")
    assert asked["container"]["type"] == "view" and asked["view"]["callback_id"] == "form"
    stage.bot.answer = options(101)
    flood = await stage.do("suggest", block_id="svc", action_id="pick", value="sv")
    assert (flood["options"], flood["error"]) == ([], "invalid_options")
    unoffered = await stage.do("fill", block_id="svc", action_id="pick", value="svc-1")
    assert unoffered["error"].startswith("no option"), "only what the menu showed can be picked"


async def test_a_required_field_left_empty_is_never_sent(stage: Stage) -> None:
    await stage.open(form())
    answer = await stage.do("submit")
    assert answer["status"] == 0 and stage.bot.payloads == []
    assert set(answer["views"][0]["errors"]) == {"tag", "svc"}


async def test_errors_stay_on_their_fields_and_an_empty_answer_closes_the_view(stage: Stage) -> None:
    await stage.open(form())
    await fill_in(stage)
    stage.bot.answer = {"response_action": "errors", "errors": {"tag": "Not a tag of that repository"}}
    refused = await stage.do("submit")
    submitted = stage.bot.payloads[-1]
    assert submitted["type"] == "view_submission" and submitted["trigger_id"]
    assert submitted["view"]["state"]["values"] == {
        "tag": {"typed": {"type": "plain_text_input", "value": "v3"}},
        "svc": {"pick": {"type": "external_select", "selected_option": options(3)["options"][1]}}}
    assert refused["views"][0]["errors"] == {"tag": "Not a tag of that repository"}
    stage.bot.answer = None
    closed = await stage.do("submit")
    assert closed["views"] == [] and closed["error"] is None


async def test_update_push_and_clear_as_slack_applies_them(stage: Stage) -> None:
    await stage.open(form())
    await fill_in(stage)
    stage.bot.answer = {"response_action": "update", "view": form("Updated")}
    updated = await stage.do("submit")
    assert [v["title"]["text"] for v in updated["views"]] == ["Updated"]
    assert updated["views"][0]["state"]["values"]["tag"]["typed"]["value"] == "v3", "same ids keep the input"
    for _ in range(2):
        stage.bot.answer = {"response_action": "push", "view": form("Pushed")}
        pushed = await stage.do("submit")
        await fill_in(stage)
    assert [v["title"]["text"] for v in pushed["views"]] == ["Updated", "Pushed", "Pushed"]
    stage.bot.answer = {"response_action": "push", "view": form("Pushed")}
    over = await stage.do("submit")
    assert over["error"] == "push_limit_reached" and len(over["views"]) == 3
    stage.bot.answer = {"response_action": "clear"}
    assert (await stage.do("submit"))["views"] == []


async def test_a_submission_answered_after_3_seconds_fails_and_the_view_stays(stage: Stage) -> None:
    await stage.open(form())
    await fill_in(stage)
    stage.bot.answer, stage.bot.delay_s = None, 3.2
    late = await stage.do("submit")
    assert (late["status"], late["error"]) == (0, "operation_timeout") and len(late["views"]) == 1


async def test_closing_tells_the_app_only_with_notify_on_close(stage: Stage) -> None:
    await stage.open(form())
    assert (await stage.do("close"))["views"] == [] and stage.bot.payloads == []
    await stage.open(form(notify_on_close=True))
    await stage.do("close")
    [closed] = stage.bot.payloads
    assert (closed["type"], closed["is_cleared"], closed["view"]["callback_id"]) == ("view_closed", False, "form")


async def test_a_button_in_the_modal_sends_block_actions_from_the_view(stage: Stage) -> None:
    button = {"type": "actions", "block_id": "act", "elements": [
        {"type": "button", "action_id": "preview", "value": "p", "text": {"type": "plain_text", "text": "Preview"}}]}
    view_id = await stage.open({**form(), "blocks": [*form()["blocks"], button]})
    await stage.do("press", action_id="preview")
    [pressed] = stage.bot.payloads
    assert pressed["type"] == "block_actions" and pressed["container"] == {"type": "view", "view_id": view_id}
    assert pressed["actions"][0]["action_id"] == "preview" and pressed["view"]["hash"]
    pushed = await stage.slack.client().views_push(trigger_id=pressed["trigger_id"], view=form("Pushed"))
    assert pushed["view"]["previous_view_id"] == view_id, "a trigger from inside the modal may push onto it"
