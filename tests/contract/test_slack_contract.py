"""The Slack emulator, driven by the real slack_sdk clients and judged by Slack's OpenAPI spec; and its user
side, driven end to end against a tiny stand-in bot that verifies requests with slack_sdk's verifier."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jsonschema
import pytest
from aiohttp import web
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.serving import Listener, start, stop
from sandbox.slack_user import USER_AGENT, slack_user_app
from tests.contract.schemas import assert_slack
from tests.contract.slack_stage import CHANNELS, DEPLOYS, LEAD, ONCALL, VIEWER, Slack, api_error, slack_api

SPEC = Path(__file__).parent / "specs" / "slack_web_openapi_v2.json"
PAGING = "response_metadata"
APPROVAL: list[dict[str, Any]] = [
    {"type": "section", "block_id": "summary",
     "text": {"type": "mrkdwn", "text": "*Deploy* prediction-worker v2"}},
    {"type": "actions", "block_id": "decide", "elements": [
        {"type": "button", "action_id": "approve", "value": "rollout-7", "style": "primary",
         "text": {"type": "plain_text", "text": "Approve"}},
        {"type": "button", "action_id": "reject", "value": "rollout-7",
         "text": {"type": "plain_text", "text": "Reject"}},
    ]},
]


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def assert_first_variant(definition: str, body: dict[str, Any]) -> None:
    """The spec writes objs_user and objs_conversation as tuples, which check nothing on an object;
    judge against their first (plain workspace user / channel) variant instead."""
    spec = json.loads(SPEC.read_text())
    schema = {**spec["definitions"][definition]["items"][0], "definitions": spec["definitions"]}
    errors = list(jsonschema.Draft4Validator(schema).iter_errors(body))
    assert not errors, [e.message for e in errors]


@pytest.fixture
async def slack() -> AsyncIterator[Slack]:
    emulator, listener = await slack_api(post_per_channel_per_s=100, post_burst=100)
    yield emulator
    await stop(listener)


@pytest.fixture
def client(slack: Slack) -> AsyncWebClient:
    return slack.client()


# --- Web API ------------------------------------------------------------------------------------------


async def test_auth_test_names_the_bot_and_the_workspace(client: AsyncWebClient) -> None:
    response = await client.auth_test()
    assert_slack("auth.test", response.data)
    assert (response["user_id"], response["bot_id"], response["team_id"]) == ("U07CHATOPS1", "B07CHATOPS1",
                                                                             "T07SANDBOX1")


async def test_a_missing_token_is_not_authed_and_a_wrong_one_invalid_auth(slack: Slack) -> None:
    async with httpx.AsyncClient() as http:
        missing = (await http.post(f"{slack.url}/api/auth.test")).json()
    wrong = await api_error(slack.client(token=f"xoxb-{secrets.token_hex(12)}").auth_test())
    for body, error in ((missing, "not_authed"), (wrong, "invalid_auth")):
        assert body == {"ok": False, "error": error}
        assert_slack("auth.test", body)


async def test_the_token_may_be_a_form_field_and_arguments_a_query_string(slack: Slack) -> None:
    async with httpx.AsyncClient() as http:
        form = await http.post(f"{slack.url}/api/conversations.info",
                               data={"token": slack.workspace.bot_token, "channel": DEPLOYS})
        query = await http.get(f"{slack.url}/api/conversations.info", params={"channel": DEPLOYS},
                               headers={"Authorization": f"Bearer {slack.workspace.bot_token}"})
        json_without_bearer = await http.post(f"{slack.url}/api/auth.test",
                                              json={"token": slack.workspace.bot_token})
    assert form.json()["channel"]["name"] == query.json()["channel"]["name"] == "deploys"
    assert form.headers["X-Slack-Req-Id"]
    assert json_without_bearer.json() == {"ok": False, "error": "not_authed"}


async def test_json_without_a_charset_is_served_with_a_missing_charset_warning(slack: Slack,
                                                                               client: AsyncWebClient) -> None:
    """JSON goes to Slack as `application/json; charset=utf-8` (https://api.slack.com/web#posting_json); without
    the charset the call is served and warned `missing_charset`, in `warning` and in `response_metadata.warnings`
    (https://api.slack.com/changelog/2016-09-28-response-metadata-is-on-the-way). slack_sdk declares the charset.
    Slack's OpenAPI spec (2019) has no `warning` in chat.postMessage's closed success schema: the documented
    warning wins, and only the unwarned answer is held to the spec."""
    bearer = {"Authorization": f"Bearer {slack.workspace.bot_token}"}
    async with httpx.AsyncClient(headers=bearer) as http:
        bare = (await http.post(f"{slack.url}/api/chat.postMessage", content=json.dumps(
            {"channel": DEPLOYS, "text": "no charset"}), headers={"Content-Type": "application/json"})).json()
        declared = (await http.post(f"{slack.url}/api/chat.postMessage", content=json.dumps(
            {"channel": DEPLOYS, "text": "utf-8"}), headers={"Content-Type": "application/json; charset=utf-8"})).json()
    sdk = await client.chat_postMessage(channel=DEPLOYS, text="from slack_sdk")
    assert bare["ok"] and bare["warning"] == "missing_charset"
    assert bare["response_metadata"]["warnings"] == ["missing_charset"]
    assert bare["response_metadata"]["messages"][0].startswith("[WARN] ")
    assert_slack("chat.postMessage", declared)
    assert "warning" not in declared and "response_metadata" not in declared
    assert "warning" not in sdk.data


async def test_post_message_returns_the_stored_message_with_a_unique_increasing_ts(
        client: AsyncWebClient) -> None:
    first = await client.chat_postMessage(channel=DEPLOYS, text="Deploying", blocks=[section("Deploying")])
    second = await client.chat_postMessage(channel="deploys", text="Deployed")
    for response in (first, second):
        assert_slack("chat.postMessage", response.data)
        assert response["channel"] == DEPLOYS
    assert first["ts"] < second["ts"]
    message = first["message"]
    assert (message["user"], message["bot_id"]) == ("U07CHATOPS1", "B07CHATOPS1")
    assert message["text"] == "Deploying"
    assert message["blocks"][0]["block_id"], "Slack gives every block a block_id"


async def test_a_form_encoded_post_carries_blocks_as_a_json_string(slack: Slack) -> None:
    sync = WebClient(token=slack.workspace.bot_token, base_url=f"{slack.url}/api/")
    posted = await asyncio.to_thread(sync.api_call, "chat.postMessage", params={
        "channel": DEPLOYS, "text": "fallback", "blocks": json.dumps(APPROVAL)})
    assert_slack("chat.postMessage", posted.data)
    assert posted["message"]["blocks"] == APPROVAL
    deleted = await asyncio.to_thread(sync.chat_delete, channel=DEPLOYS, ts=posted["ts"])
    assert_slack("chat.delete", deleted.data)
    assert slack.workspace.seen_by(DEPLOYS, ONCALL) == []


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
@pytest.mark.parametrize(("arguments", "error"), [
    ({"channel": "C07NOWHERE1", "text": "hi"}, "channel_not_found"),
    ({"channel": DEPLOYS}, "no_text"),
    ({"channel": DEPLOYS, "text": ""}, "no_text"),
    ({"channel": DEPLOYS, "text": "x" * 40_001}, "msg_too_long"),
])
async def test_post_message_refuses_as_slack_does(client: AsyncWebClient, arguments: dict[str, Any],
                                                  error: str) -> None:
    body = await api_error(client.chat_postMessage(**arguments))
    assert body == {"ok": False, "error": error}
    assert_slack("chat.postMessage", body)


@pytest.mark.parametrize(("blocks", "detail"), [
    ([section("ok")] * 51, "no more than 50 items [json-pointer:/blocks]"),
    ([section("x" * 3001)], "must be less than 3001 characters [json-pointer:/blocks/0/text/text]"),
    ([{"text": "no type"}], "missing required field: type [json-pointer:/blocks/0]"),
    (["not an object"], "missing required field: type [json-pointer:/blocks/0]"),
    ([{"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}], "[json-pointer:/blocks/0/text]"),
])
async def test_invalid_blocks_are_refused_with_slacks_json_pointer(client: AsyncWebClient,
                                                                   blocks: list[Any], detail: str) -> None:
    """`invalid_blocks` postdates the spec's error enum, so its shape is checked here instead."""
    body = await api_error(client.chat_postMessage(channel=DEPLOYS, text="t", blocks=blocks))
    assert (body["ok"], body["error"]) == (False, "invalid_blocks")
    assert any(detail in error for error in body["errors"]), body["errors"]
    assert body["response_metadata"]["messages"] == [f"[ERROR] {e}" for e in body["errors"]]


async def test_blocks_that_are_not_json_are_invalid_blocks_format(slack: Slack) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{slack.url}/api/chat.postMessage", data={
            "token": slack.workspace.bot_token, "channel": DEPLOYS, "blocks": "[{not json"})
    assert response.json() == {"ok": False, "error": "invalid_blocks_format"}


async def test_a_thread_reply_marks_its_parent_and_history_shows_parents_only(client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel=DEPLOYS, text="Rollout started")
    replies = [await client.chat_postMessage(channel=DEPLOYS, text=f"Stage {p}%", thread_ts=parent["ts"])
               for p in (5, 50)]
    assert replies[0]["message"]["thread_ts"] == parent["ts"]
    assert replies[0]["message"]["parent_user_id"] == "U07CHATOPS1"

    history = await client.conversations_history(channel=DEPLOYS)
    assert_slack("conversations.history", history.data)
    [shown] = history["messages"]
    assert shown["ts"] == shown["thread_ts"] == parent["ts"]
    assert (shown["reply_count"], shown["latest_reply"]) == (2, replies[-1]["ts"])

    thread = await client.conversations_replies(channel=DEPLOYS, ts=parent["ts"])
    assert_slack("conversations.replies", thread.data)
    assert [m["text"] for m in thread["messages"]] == ["Rollout started", "Stage 5%", "Stage 50%"]
    alone = await client.chat_postMessage(channel=DEPLOYS, text="Nobody answers this")
    unthreaded = await client.conversations_replies(channel=DEPLOYS, ts=alone["ts"])
    assert [(m["text"], "thread_ts" in m, "reply_count" in m) for m in unthreaded["messages"]] == [
        ("Nobody answers this", False, False)], "\"just the single message referenced by ts ... an ordinary, " \
        "unthreaded message\" (https://docs.slack.dev/reference/methods/conversations.replies)"
    missing = await api_error(client.conversations_replies(channel=DEPLOYS, ts="1700000000.000001"))
    assert missing == {"ok": False, "error": "thread_not_found"}
    assert_slack("conversations.replies", missing)


async def test_history_pages_newest_first_by_cursor_and_window(client: AsyncWebClient) -> None:
    posted = [(await client.chat_postMessage(channel=DEPLOYS, text=f"m{i}"))["ts"] for i in range(5)]

    pages = []
    async for page in await client.conversations_history(channel=DEPLOYS, limit=2):
        # the spec's history schema predates response_metadata, which slack_sdk's paging follows
        assert_slack("conversations.history", {k: v for k, v in page.data.items() if k != PAGING})
        pages.append(([m["text"] for m in page["messages"]], page["has_more"]))
    assert pages == [(["m4", "m3"], True), (["m2", "m1"], True), (["m0"], False)]

    window = await client.conversations_history(channel=DEPLOYS, oldest=posted[1], latest=posted[3])
    assert [m["text"] for m in window["messages"]] == ["m2"]
    inclusive = await client.conversations_history(channel=DEPLOYS, oldest=posted[1], latest=posted[3],
                                                   inclusive=True)
    assert [m["text"] for m in inclusive["messages"]] == ["m3", "m2", "m1"]
    empty = await client.conversations_history(channel="C07ALERTS01")
    assert (empty["messages"], empty["has_more"]) == ([], False)


async def test_history_and_replies_page_by_cursor_and_limit_from_oldest(client: AsyncWebClient) -> None:
    """`oldest`: "Only messages after this Unix timestamp will be included in results"; `limit`: "The maximum number
    of items to return ... Maximum of 999"; `cursor`: a `next_cursor` from `response_metadata`, "along with limit,
    you may navigate through the collection page by virtual page"; "The most recent messages in the time range are
    returned first" (https://docs.slack.dev/reference/methods/conversations.history). conversations.replies, "a
    cursor-paginated thread of messages", takes the same `oldest`, `cursor` and `limit`
    (https://docs.slack.dev/reference/methods/conversations.replies). The bot's search for a message whose answer
    was lost reads every page since the message was written."""
    before = [(await client.chat_postMessage(channel=DEPLOYS, text=f"old {i}"))["ts"] for i in range(2)]
    after = [(await client.chat_postMessage(channel=DEPLOYS, text=f"new {i}"))["ts"] for i in range(5)]
    pages, cursor = [], None
    while True:
        page = await client.conversations_history(channel=DEPLOYS, oldest=before[-1], limit=2, cursor=cursor)
        assert_slack("conversations.history", {k: v for k, v in page.data.items() if k != PAGING})
        pages.append([m["text"] for m in page["messages"]])
        cursor = (page.get(PAGING) or {}).get("next_cursor")
        assert page["has_more"] == bool(cursor)
        if not cursor:
            break
    assert pages == [["new 4", "new 3"], ["new 2", "new 1"], ["new 0"]]

    parent = after[0]
    replies = [(await client.chat_postMessage(channel=DEPLOYS, text=f"reply {i}", thread_ts=parent))["ts"]
               for i in range(5)]
    thread, cursor = [], None
    while True:
        page = await client.conversations_replies(channel=DEPLOYS, ts=parent, oldest=replies[1], limit=2,
                                                  cursor=cursor)
        assert_slack("conversations.replies", {k: v for k, v in page.data.items() if k != PAGING})
        thread.append([m["text"] for m in page["messages"]])
        cursor = (page.get(PAGING) or {}).get("next_cursor")
        if not cursor:
            break
    assert all(len(page) <= 2 for page in thread)
    assert [text for page in thread for text in page if text.startswith("reply")] == ["reply 2", "reply 3", "reply 4"]


async def test_update_keeps_the_ts_and_only_the_author_may_update(slack: Slack,
                                                                  client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=DEPLOYS, text="Stage 5%", blocks=[section("5%")])
    updated = await client.chat_update(channel=DEPLOYS, ts=posted["ts"], text="Stage 50%",
                                       blocks=[section("50%")])
    assert_slack("chat.update", updated.data)
    assert (updated["ts"], updated["text"]) == (posted["ts"], "Stage 50%")
    [seen] = slack.workspace.seen_by(DEPLOYS, VIEWER)
    assert seen["blocks"][0]["text"]["text"] == "50%"
    assert seen["edited"]["user"] == "U07CHATOPS1"

    human = slack.workspace.post(DEPLOYS, ONCALL, "lgtm")
    for ts, error in ((human.ts, "cant_update_message"), ("1700000000.000001", "message_not_found")):
        body = await api_error(client.chat_update(channel=DEPLOYS, ts=ts, text="x"))
        assert body == {"ok": False, "error": error}
        assert_slack("chat.update", body)
    body = await api_error(client.chat_delete(channel=DEPLOYS, ts=human.ts))
    assert body == {"ok": False, "error": "cant_delete_message"}
    assert_slack("chat.delete", body)


async def test_an_ephemeral_is_seen_only_by_its_user(slack: Slack, client: AsyncWebClient) -> None:
    response = await client.chat_postEphemeral(channel=DEPLOYS, user=ONCALL, text="Only you can see this")
    assert_slack("chat.postEphemeral", response.data)
    [seen] = slack.workspace.seen_by(DEPLOYS, ONCALL)
    assert (seen["kind"], seen["ts"], seen["ephemeral"]) == ("ephemeral", response["message_ts"], True)
    assert slack.workspace.seen_by(DEPLOYS, VIEWER) == []
    assert (await client.conversations_history(channel=DEPLOYS))["messages"] == []
    body = await api_error(client.chat_postEphemeral(channel=DEPLOYS, user="U07NOBODY01", text="x"))
    assert body == {"ok": False, "error": "user_not_in_channel"}
    assert_slack("chat.postEphemeral", body)


async def test_conversations_info_and_list_describe_the_configured_channels(client: AsyncWebClient) -> None:
    info = await client.conversations_info(channel=DEPLOYS)
    assert_slack("conversations.info", info.data)
    assert_first_variant("objs_conversation", info["channel"])
    listed = await client.conversations_list()
    assert_slack("conversations.list", listed.data)
    assert {c["name"]: c["id"] for c in listed["channels"]} == CHANNELS
    missing = await api_error(client.conversations_info(channel="C07NOWHERE1"))
    assert missing == {"ok": False, "error": "channel_not_found"}
    assert_slack("conversations.info", missing)


async def test_users_info_knows_the_people_and_the_bot(client: AsyncWebClient) -> None:
    for user_id, real_name, is_bot in ((ONCALL, "On-call Engineer", False), ("U07CHATOPS1", "chatops", True)):
        response = await client.users_info(user=user_id)
        assert_slack("users.info", response.data)
        assert_first_variant("objs_user", response["user"])
        assert (response["user"]["real_name"], response["user"]["is_bot"]) == (real_name, is_bot)
    missing = await api_error(client.users_info(user="U07NOBODY01"))
    assert missing == {"ok": False, "error": "user_not_found"}
    assert_slack("users.info", missing)


async def test_a_reaction_is_added_once(slack: Slack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=DEPLOYS, text="Rollback requested")
    response = await client.reactions_add(channel=DEPLOYS, timestamp=posted["ts"], name="eyes")
    assert_slack("reactions.add", response.data)
    [seen] = slack.workspace.seen_by(DEPLOYS, VIEWER)
    assert seen["reactions"] == [{"name": "eyes", "users": ["U07CHATOPS1"], "count": 1}]
    for ts, error in ((posted["ts"], "already_reacted"), ("1700000000.000001", "message_not_found")):
        body = await api_error(client.reactions_add(channel=DEPLOYS, timestamp=ts, name="eyes"))
        assert body == {"ok": False, "error": error}
        assert_slack("reactions.add", body)


async def test_posting_too_fast_is_429_and_slack_sdk_retries_after_retry_after() -> None:
    """chat.postMessage "will generally allow an app to post 1 message per second to a specific channel"
    (https://docs.slack.dev/reference/methods/chat.postMessage#rate-limiting); 429 and Retry-After as
    https://docs.slack.dev/apis/web-api/rate-limits says."""
    slack, listener = await slack_api(post_per_channel_per_s=1, post_burst=1)
    try:
        client = slack.client()
        await client.chat_postMessage(channel=DEPLOYS, text="first")
        with pytest.raises(SlackApiError) as raised:
            await client.chat_postMessage(channel=DEPLOYS, text="too soon")
        assert raised.value.response.status_code == 429
        assert raised.value.response.data == {"ok": False, "error": "ratelimited"}
        assert int(raised.value.response.headers["Retry-After"]) >= 1

        patient = WebClient(token=slack.workspace.bot_token, base_url=f"{slack.url}/api/",
                            retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
        started = time.monotonic()
        posted = await asyncio.to_thread(patient.chat_postMessage, channel=DEPLOYS, text="eventually")
        assert posted["message"]["text"] == "eventually"
        assert time.monotonic() - started >= 1
        assert slack.workspace.calls["chat.postMessage"] == 4
        other_channel = await client.chat_postMessage(channel="C07ALERTS01", text="unaffected")
        assert other_channel["ok"]
    finally:
        await stop(listener)


async def test_an_unknown_method_is_404_unknown_method(slack: Slack, client: AsyncWebClient) -> None:
    body = await api_error(client.api_call("chat.postMesage"))
    assert body == {"ok": False, "error": "unknown_method"}
    assert slack.workspace.calls["chat.postMesage"] == 1


# --- the user side ------------------------------------------------------------------------------------


@dataclass
class Arrival:
    port: int
    headers: dict[str, str]
    body: str
    valid: bool

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body, keep_blank_values=True))

    @property
    def payload(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.form["payload"])
        return parsed


@dataclass
class StandInBot:
    """Verifies Slack's signature as bolt does (401 if wrong), acks with `ack` and, if `reply` is set,
    then answers on the response_url with httpx."""

    verifier: SignatureVerifier
    ack: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    replies: list[httpx.Response] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/slack/events", self._events)
        return app

    async def _events(self, request: web.Request) -> web.Response:
        body = await request.text()
        valid = self.verifier.is_valid_request(body, dict(request.headers))
        arrival = Arrival(request.url.port or 0, dict(request.headers), body, valid)
        self.arrivals.append(arrival)
        if not valid:
            return web.json_response({"error": "invalid request"}, status=401)
        if self.reply is not None:
            url = arrival.form.get("response_url") or arrival.payload["response_url"]
            task = asyncio.create_task(self._respond(url, self.reply))
            self._tasks.add(task)
        return web.json_response(self.ack) if self.ack else web.Response()

    async def _respond(self, url: str, reply: dict[str, Any]) -> None:
        async with httpx.AsyncClient() as http:
            self.replies.append(await http.post(url, json=reply))

    async def settle(self) -> None:
        await asyncio.gather(*self._tasks)


@dataclass
class People:
    slack: Slack
    bot: StandInBot
    url: str
    bot_ports: list[int]

    async def do(self, path: str, **request: Any) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            answer: dict[str, Any] = (await http.post(f"{self.url}{path}", json=request)).json()
        await self.bot.settle()
        return answer

    async def see(self, user: str, channel: str = "deploys") -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as http:
            seen: list[dict[str, Any]] = (await http.get(f"{self.url}/messages",
                                                         params={"channel": channel, "user": user})).json()
        return seen


@pytest.fixture
async def people(slack: Slack) -> AsyncIterator[People]:
    signing_secret = secrets.token_hex(16)
    bot = StandInBot(SignatureVerifier(signing_secret))
    bots = [await start(Listener(f"bot{i}", bot.app())) for i in range(2)]
    user_side = await start(Listener("slack_user", slack_user_app(
        slack.workspace, signing_secret=signing_secret, bot_urls=[b.url for b in bots], api_url=slack.url)))
    yield People(slack, bot, user_side.url, [b.port for b in bots])
    for listener in (user_side, *bots):
        await stop(listener)


async def test_a_signed_slash_command_arrives_with_every_field_slack_sends(people: People) -> None:
    answer = await people.do("/commands", user="oncall", channel="deploys", command="/health", text="all")
    assert (answer["status"], answer["body"], answer["error"]) == (200, "", None)
    [arrival] = people.bot.arrivals
    assert arrival.valid
    assert arrival.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert arrival.headers["User-Agent"] == USER_AGENT
    form = arrival.form
    expected = {
        "team_id": "T07SANDBOX1", "team_domain": "nba-props",
        "channel_id": DEPLOYS, "channel_name": "deploys",
        "user_id": ONCALL, "user_name": "oncall", "command": "/health", "text": "all",
        "api_app_id": "A07CHATOPS1", "is_enterprise_install": "false"}
    assert list(form) == ["token", *expected, "response_url", "trigger_id"]
    assert {k: form[k] for k in expected} == expected
    assert form["token"] and form["trigger_id"]
    assert form["response_url"] == answer["response_url"]
    assert form["response_url"].startswith(f"{people.url}/response/")
    assert await people.see("oncall") == [], "an empty 200 shows nothing"


@pytest.mark.parametrize("override", [
    {"signature": f"v0={'0' * 64}"},
    {"timestamp": int(time.time()) - 6 * 60},
])
async def test_a_forged_or_replayed_request_is_refused_by_the_verifier(people: People,
                                                                       override: dict[str, Any]) -> None:
    answer = await people.do("/commands", user=ONCALL, channel=DEPLOYS, command="/deploy", text="x",
                             **override)
    assert (answer["status"], answer["error"]) == (401, "dispatch_failed")
    [arrival] = people.bot.arrivals
    assert not arrival.valid
    if "timestamp" in override:  # correctly signed, only too old
        timestamp = arrival.headers["X-Slack-Request-Timestamp"]
        assert timestamp == str(override["timestamp"])
        assert people.bot.verifier.generate_signature(timestamp=timestamp, body=arrival.body) == (
            arrival.headers["X-Slack-Signature"])
    [seen] = await people.see("oncall")
    assert (seen["kind"], seen["user"]) == ("ephemeral", "USLACKBOT")
    assert seen["text"] == '/deploy failed with the error "dispatch_failed"'


async def test_the_ack_is_shown_only_to_the_invoker_and_a_response_url_reply_follows(
        people: People) -> None:
    people.bot.ack = {"text": "Checking 7 services…"}
    people.bot.reply = {"text": "All healthy", "blocks": [section("*7/7* healthy")]}
    answer = await people.do("/commands", user="oncall", channel="deploys", command="/health", text="")
    assert json.loads(answer["body"]) == people.bot.ack
    assert [r.json() for r in people.bot.replies] == [{"ok": True}]
    seen = await people.see("oncall")
    assert sorted((s["kind"], s["text"]) for s in seen) == [("ephemeral", "All healthy"),
                                                            ("ephemeral", "Checking 7 services…")]
    assert await people.see("viewer") == []


async def test_an_in_channel_answer_is_seen_by_everyone(people: People) -> None:
    people.bot.ack = {"response_type": "in_channel", "text": "Deploying prediction-worker"}
    await people.do("/commands", user="lead", channel="deploys", command="/deploy", text="prediction-worker")
    for user in ("lead", "viewer"):
        [seen] = await people.see(user)
        assert (seen["kind"], seen["user"], seen["text"]) == ("message", "U07CHATOPS1",
                                                              "Deploying prediction-worker")


async def test_replace_original_replaces_the_ephemeral_and_a_response_url_is_spent_after_five(
        people: People) -> None:
    """"you can use a response_url up to five times within 30 minutes"
    (https://api.slack.com/interactivity/handling#message_responses); the 404 `used_url` is an assumption."""
    people.bot.ack = {"text": "Checking…"}
    answer = await people.do("/commands", user="oncall", channel="deploys", command="/health", text="")
    async with httpx.AsyncClient() as http:
        replaced = await http.post(answer["response_url"], json={"replace_original": True, "text": "Done"})
        assert (replaced.status_code, replaced.json()) == (200, {"ok": True})
        assert [s["text"] for s in await people.see("oncall")] == ["Done"]
        for _ in range(4):
            assert (await http.post(answer["response_url"], json={"text": "again"})).status_code == 200
        spent = await http.post(answer["response_url"], json={"text": "sixth"})
        assert (spent.status_code, spent.json()) == (404, {"ok": False, "error": "used_url"})
        unknown = await http.post(f"{people.url}/response/nope", json={"text": "x"})
        assert unknown.status_code == 404


async def test_a_button_click_arrives_as_block_actions(people: People, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=DEPLOYS, text="Approve deploy?", blocks=APPROVAL)
    answer = await people.do("/actions", user="lead", channel="deploys", message_ts=posted["ts"],
                             action_id="approve")
    assert (answer["status"], answer["error"]) == (200, None)
    [arrival] = people.bot.arrivals
    assert arrival.valid and list(arrival.form) == ["payload"]
    payload = arrival.payload
    assert payload["type"] == "block_actions"
    assert payload["user"] == {"id": LEAD, "username": "lead", "name": "lead", "team_id": "T07SANDBOX1"}
    assert payload["container"] == {"type": "message", "message_ts": posted["ts"], "channel_id": DEPLOYS,
                                    "is_ephemeral": False}
    assert payload["channel"] == {"id": DEPLOYS, "name": "deploys"}
    assert payload["team"] == {"id": "T07SANDBOX1", "domain": "nba-props"}
    assert payload["message"]["blocks"] == APPROVAL
    assert payload["response_url"] == answer["response_url"]
    [action] = payload["actions"]
    assert {k: action[k] for k in ("action_id", "block_id", "value", "type", "style")} == {
        "action_id": "approve", "block_id": "decide", "value": "rollout-7", "type": "button",
        "style": "primary"}
    assert action["text"] == {"type": "plain_text", "text": "Approve"}

    for missing in ({"message_ts": "1700000000.000001", "action_id": "approve"},
                    {"message_ts": posted["ts"], "action_id": "promote"}):
        async with httpx.AsyncClient() as http:
            refused = await http.post(f"{people.url}/actions",
                                      json={"user": "lead", "channel": DEPLOYS, **missing})
        assert refused.status_code == 404
    assert len(people.bot.arrivals) == 1


async def test_replace_original_after_a_click_updates_the_clicked_message(people: People,
                                                                          client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=DEPLOYS, text="Approve deploy?", blocks=APPROVAL)
    people.bot.reply = {"replace_original": True, "text": "Approved by <@U07LEAD0001>"}
    await people.do("/actions", user="lead", channel="deploys", message_ts=posted["ts"], action_id="approve")
    [seen] = await people.see("viewer")
    assert (seen["ts"], seen["text"], seen["blocks"]) == (posted["ts"], "Approved by <@U07LEAD0001>", [])


async def test_deliveries_go_round_robin_over_the_bot_urls(people: People) -> None:
    for _ in range(4):
        await people.do("/commands", user="viewer", channel="alerts", command="/status", text="")
    assert [a.port for a in people.bot.arrivals] == people.bot_ports * 2


async def test_an_unreachable_bot_gives_status_0_at_once(slack: Slack) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        user_side = await start(Listener("slack_user", slack_user_app(
            slack.workspace, signing_secret=secrets.token_hex(16),
            bot_urls=[f"http://127.0.0.1:{closed.getsockname()[1]}"], api_url=slack.url)))
        try:
            async with httpx.AsyncClient() as http:
                answer = (await http.post(f"{user_side.url}/commands", json={
                    "user": "oncall", "channel": "deploys", "command": "/health", "text": ""})).json()
        finally:
            await stop(user_side)
    assert (answer["status"], answer["body"], answer["error"]) == (0, "", "dispatch_failed")
    assert answer["ack_ms"] < 1000
    [seen] = slack.workspace.seen_by(DEPLOYS, ONCALL)
    assert seen["text"] == '/health failed with the error "dispatch_failed"'


async def test_people_and_channels_are_listed_by_name_and_id(people: People) -> None:
    async with httpx.AsyncClient() as http:
        users = (await http.get(f"{people.url}/users")).json()
        channels = (await http.get(f"{people.url}/channels")).json()
    named = {u["name"]: u["id"] for u in users}
    people_and_bot = {"oncall": ONCALL, "viewer": VIEWER, "lead": LEAD, "chatops": "U07CHATOPS1"}
    assert named.items() >= people_and_bot.items()
    assert {c["name"]: c["id"] for c in channels} == CHANNELS


async def test_message_metadata_is_kept_and_returned_only_when_asked_for(client: AsyncWebClient) -> None:
    """https://docs.slack.dev/messaging/message-metadata: a message may carry {"event_type", "event_payload"};
    conversations.history and .replies return it with `include_all_metadata`
    (https://api.slack.com/methods/conversations.history#arg_include_all_metadata)."""
    metadata = {"event_type": "chatops_outbox", "event_payload": {"id": 41}}
    parent = await client.chat_postMessage(channel=DEPLOYS, text="incident", metadata=metadata)
    await client.chat_postMessage(channel=DEPLOYS, text="reply", thread_ts=parent["ts"],
                                  metadata={"event_type": "chatops_outbox", "event_payload": {"id": 42}})
    plain = await client.conversations_history(channel=DEPLOYS, limit=1)
    assert_slack("conversations.history", plain.data)
    assert "metadata" not in plain["messages"][0]
    # Message metadata (2022) postdates Slack's OpenAPI spec v2, whose objs_message forbids properties it does
    # not list; the metadata page above is the judge of this shape.
    full = await client.conversations_history(channel=DEPLOYS, limit=1, include_all_metadata=True)
    assert full["messages"][0]["metadata"] == metadata
    thread = await client.conversations_replies(channel=DEPLOYS, ts=parent["ts"], include_all_metadata=True)
    assert [m["metadata"]["event_payload"]["id"] for m in thread["messages"]] == [41, 42]
    refused = await api_error(client.chat_postMessage(channel=DEPLOYS, text="x", metadata={"event_type": "x"}))
    assert refused["error"] == "invalid_metadata_format"
