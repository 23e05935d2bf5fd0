"""Slack's published limits as the emulator enforces them, driven by slack_sdk's real clients: rate limits per
method at each method's tier, tokens only where Slack takes them, scopes, and the response_url's five posts in
30 minutes. Each test names the page its behaviour comes from."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import yaml
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from sandbox.serving import Listener, start, stop
from sandbox.slack_scopes import ACCEPTED, MANIFEST
from sandbox.slack_user import slack_user_app
from sandbox.world import World
from tests.contract.schemas import assert_slack
from tests.contract.slack_stage import DEPLOYS, ONCALL, VIEWER, Slack, api_error, slack_api
from tests.slack_spec import bot_scopes

TIERS = {
    "auth.test": "auth_test_per_min",
    "chat.postMessage": "post_per_workspace_per_min",
    "chat.update": "tier3_per_min",
    "chat.postEphemeral": "tier4_per_min",
    "chat.delete": "tier3_per_min",
    "conversations.history": "tier3_per_min",
    "conversations.replies": "tier3_per_min",
    "conversations.info": "tier3_per_min",
    "conversations.list": "tier2_per_min",
    "users.info": "tier4_per_min",
    "usergroups.list": "tier2_per_min",
    "usergroups.users.list": "tier2_per_min",
    "reactions.add": "tier3_per_min",
}
"""Each method's tier as its page https://docs.slack.dev/reference/methods/<name> states it ("Special" for
auth.test and chat.postMessage)."""


@pytest.fixture
async def slack() -> AsyncIterator[Slack]:
    emulator, listener = await slack_api()
    yield emulator
    await stop(listener)


async def call(client: AsyncWebClient, method: str) -> int:
    """The HTTP status of one call, whatever its arguments make of it (the limit counts every call)."""
    try:
        return (await client.api_call(method, params={})).status_code
    except SlackApiError as error:
        return error.response.status_code


@pytest.mark.parametrize(("method", "figure"), sorted(TIERS.items()))
async def test_each_method_is_limited_per_minute_at_its_tier_with_429_and_retry_after(method: str,
                                                                                      figure: str) -> None:
    """https://docs.slack.dev/apis/web-api/rate-limits: "Slack will return a HTTP 429 Too Many Requests error,
    and a Retry-After HTTP header containing the number of seconds until you can retry"; windows are per
    minute and per method. A figure of 1 leaves a burst of one more call (the sandbox's reading of "A small
    amount of burst behavior is tolerated")."""
    slack, listener = await slack_api(**{figure: 1})
    try:
        client = slack.client()
        assert [await call(client, method) for _ in range(2)] == [200, 200]
        with pytest.raises(SlackApiError) as raised:
            await client.api_call(method, params={})
        response = raised.value.response
        assert (response.status_code, response.data) == (429, {"ok": False, "error": "ratelimited"})
        assert 55 <= int(response.headers["Retry-After"]) <= 60
        other = "auth.test" if method != "auth.test" else "chat.update"
        assert await call(client, other) == 200, "calls to other methods are not restricted"
    finally:
        await stop(listener)


async def test_slack_sdks_retry_handler_waits_out_retry_after_and_the_call_then_lands() -> None:
    """https://docs.slack.dev/apis/web-api/rate-limits: "This response instructs your app to wait 30 seconds
    before attempting to call the method" (here a 1 s window, so the wait is 1 s)."""
    slack, listener = await slack_api(tier3_per_min=1, window_s=1.0, tier_burst_fraction=0.0)
    try:
        patient = slack.client()
        patient.retry_handlers = [AsyncRateLimitErrorRetryHandler(max_retry_count=2)]
        await patient.conversations_info(channel=DEPLOYS)
        started = time.monotonic()
        info = await patient.conversations_info(channel=DEPLOYS)
        assert info["channel"]["id"] == DEPLOYS
        assert time.monotonic() - started >= 1
        assert slack.workspace.calls["conversations.info"] == 3
    finally:
        await stop(listener)


async def test_a_token_in_the_query_string_is_invalid_auth_and_in_the_body_or_header_is_not(slack: Slack) -> None:
    """https://api.slack.com/changelog/2020-11-no-more-tokens-in-querystrings-for-newly-created-apps: "Apps
    created after February 24, 2021 may no longer send tokens as query parameters and must instead use an HTTP
    authorization header or send the token in an HTTP POST body". The error is `invalid_auth`, as apps that kept
    doing it report (https://github.com/HubSpot/slack-client/issues/215). slack_sdk always uses the header."""
    token = slack.workspace.bot_token
    async with httpx.AsyncClient(base_url=f"{slack.url}/api") as http:
        in_query = (await http.get("/auth.test", params={"token": token})).json()
        in_body = (await http.post("/auth.test", data={"token": token})).json()
        in_header = (await http.get("/auth.test", headers={"Authorization": f"Bearer {token}"})).json()
        slack.workspace.limits.token_in_query_refused = False
        older_app = (await http.get("/auth.test", params={"token": token})).json()
    assert in_query == {"ok": False, "error": "invalid_auth"}
    assert_slack("auth.test", in_query)
    assert in_body["ok"] and in_header["ok"] and older_app["ok"]


async def test_every_answer_to_a_token_names_its_scopes_and_the_scopes_the_method_accepts() -> None:
    """"When using the Slack API you can check the HTTP headers to see what OAuth scopes you have, and what the
    API method accepts" (https://api.slack.com/docs/oauth-scopes, "Working with scopes")."""
    slack, listener = await slack_api(scopes=("commands", "chat:write"))
    try:
        client = slack.client()
        posted = await client.chat_postMessage(channel=DEPLOYS, text="Deploying")
        assert (posted.headers["x-oauth-scopes"], posted.headers["x-accepted-oauth-scopes"]) == (
            "commands, chat:write", "chat:write")
        with pytest.raises(SlackApiError) as raised:
            await client.conversations_info(channel=DEPLOYS)
        assert raised.value.response.headers["x-accepted-oauth-scopes"] == (
            "channels:read, groups:read, im:read, mpim:read")
        assert (await client.auth_test()).headers["x-accepted-oauth-scopes"] == ""
    finally:
        await stop(listener)


async def test_a_method_called_without_its_scope_is_missing_scope_with_needed_and_provided() -> None:
    """The spec's conversations.* error schemas carry `needed` and `provided`; on the wire `provided` is the
    token's scopes joined by commas (https://github.com/elementary-data/elementary/pull/705)."""
    slack, listener = await slack_api(scopes=("commands", "chat:write"))
    try:
        client = slack.client()
        history = await api_error(client.conversations_history(channel=DEPLOYS))
        assert history == {"ok": False, "error": "missing_scope", "needed": "channels:history",
                           "provided": "commands,chat:write"}
        assert_slack("conversations.history", history)
        assert (await api_error(client.users_info(user=ONCALL)))["needed"] == "users:read"
        assert (await client.chat_postMessage(channel=DEPLOYS, text="still fine"))["ok"]
    finally:
        await stop(listener)


def test_the_scopes_the_emulator_asks_for_are_those_of_slacks_openapi_spec() -> None:
    """https://docs.slack.dev/reference/scopes/chat.write: "For Slack apps, chat:write replaces both
    chat:write:user and chat:write:bot"."""
    assert {method: set(scopes) for method, scopes in ACCEPTED.items()} == {
        method: bot_scopes(method) for method in ACCEPTED}


@pytest.fixture
async def response_url(slack: Slack) -> AsyncIterator[str]:
    """A response_url for a slash command the on-call typed in #deploys, served by the user side."""
    user_side = await start(Listener("slack_user", slack_user_app(
        slack.workspace, signing_secret="unused-in-these-tests", bot_urls=[], api_url=slack.url)))
    yield f"{user_side.url}/response/{slack.workspace.open_response_url(DEPLOYS, ONCALL)}"
    await stop(user_side)


async def test_a_response_url_takes_five_posts_and_refuses_the_sixth(slack: Slack, response_url: str) -> None:
    """"you can use a response_url up to five times within 30 minutes"
    (https://api.slack.com/interactivity/handling#message_responses). Slack documents no answer for the sixth;
    the emulator's 404 `used_url` is an assumption."""
    webhook = AsyncWebhookClient(response_url)
    for i in range(5):
        sent = await webhook.send(text=f"update {i}")
        assert sent.status_code == 200
    refused = await webhook.send(text="one too many")
    assert (refused.status_code, json.loads(refused.body)) == (404, {"ok": False, "error": "used_url"})
    assert [s["text"] for s in slack.workspace.seen_by(DEPLOYS, ONCALL)] == [f"update {i}" for i in range(5)]


async def test_a_response_url_is_refused_once_its_30_minutes_are_over(slack: Slack, response_url: str) -> None:
    """https://api.slack.com/interactivity/handling#message_responses; the lifetime shortened through the limit
    group. The 404 `expired_url` is an assumption, as for the sixth use."""
    slack.workspace.limits.response_url_lifetime_s = 0.05
    await asyncio.sleep(0.06)
    refused = await AsyncWebhookClient(response_url).send(text="too late")
    assert (refused.status_code, json.loads(refused.body)) == (404, {"ok": False, "error": "expired_url"})
    assert slack.workspace.seen_by(DEPLOYS, ONCALL) == slack.workspace.seen_by(DEPLOYS, VIEWER) == []


async def test_the_world_serves_the_slack_limit_group_and_grants_the_manifests_bot_scopes(world: World) -> None:
    """The token Slack gives an app created from slack-manifest.yaml holds its `oauth_config.scopes.bot`."""
    bot_scopes_in_manifest = yaml.safe_load(MANIFEST.read_text())["oauth_config"]["scopes"]["bot"]
    client = AsyncWebClient(token=world.bot_token, base_url=f"{world.url('slack_api')}/api/")
    assert (await client.auth_test()).headers["x-oauth-scopes"] == ", ".join(bot_scopes_in_manifest)
    async with httpx.AsyncClient(base_url=world.url("control")) as control:
        published = (await control.get("/limits")).json()["slack"]
        assert (published["tier3_per_min"], published["response_url_uses"]) == (50, 5)
        try:
            patched = await control.patch("/limits/slack", json={"response_url_uses": 2})
            assert patched.json()["response_url_uses"] == world.workspace.limits.response_url_uses == 2
        finally:
            await control.patch("/limits/slack", json={"response_url_uses": 5})
