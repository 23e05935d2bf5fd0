"""The bot's Slack gateway against the emulator's published limits. The outbox's calls are made once: a 429 comes back
with its Retry-After (https://docs.slack.dev/apis/web-api/rate-limits) for the outbox to wait out, and a post whose
connection dropped is not made again underneath it; other calls wait out a 429, and reads are made again after a
dropped connection. A marked message is found however many pages of history came after it. A reply whose
response_url is spent or expired (https://api.slack.com/interactivity/handling#message_responses) reaches the
invoker as an ephemeral message."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError

from bot.adapters.slack import SlackGateway, SlackUnreachable, retry_after
from sandbox.serving import Listener, start, stop
from sandbox.slack_user import slack_user_app
from sandbox.slack_workspace import BOT
from tests.contract.slack_stage import DEPLOYS, LEAD, ONCALL, VIEWER, Slack, slack_api


@dataclass
class Stage:
    slack: Slack
    gateway: SlackGateway
    user_url: str

    def response_url(self) -> str:
        """A fresh response_url, as for a slash command the on-call typed in #deploys."""
        return f"{self.user_url}/response/{self.slack.workspace.open_response_url(DEPLOYS, ONCALL)}"

    def seen(self, user: str = ONCALL) -> list[tuple[str, str]]:
        return [(s["kind"], s["text"]) for s in self.slack.workspace.seen_by(DEPLOYS, user)]


@pytest.fixture
async def stage() -> AsyncIterator[Stage]:
    slack, api = await slack_api(tier3_per_min=1, window_s=1.0, tier_burst_fraction=0.0, post_per_channel_per_s=1.0,
                                 post_burst=1)
    user_side = await start(Listener("slack_user", slack_user_app(
        slack.workspace, signing_secret="unused-in-these-tests", bot_urls=[], api_url=slack.url)))
    gateway = SlackGateway(slack.workspace.bot_token, base_url=f"{slack.url}/api/")
    yield Stage(slack, gateway, user_side.url)
    await gateway.aclose()
    for listener in (user_side, api):
        await stop(listener)


async def test_the_outboxs_redraw_past_the_tier_is_answered_429_with_retry_after_and_made_once(stage: Stage) -> None:
    """chat.update is Tier 3 (https://docs.slack.dev/reference/methods/chat.update), here 1 call a second: the outbox's
    redraw is not tried again underneath the outbox, which learns how long Slack asked it to wait."""
    posted = await stage.gateway.send(DEPLOYS, "Stage 5%", marker=1)
    await stage.gateway.redraw(DEPLOYS, posted.ts, "Stage 25%")
    with pytest.raises(SlackApiError) as limited:
        await stage.gateway.redraw(DEPLOYS, posted.ts, "Stage 50%")
    assert retry_after(limited.value) == 1.0
    assert stage.slack.workspace.calls["chat.update"] == 2, "the 429 was not followed by a retry"
    assert stage.seen(VIEWER) == [("message", "Stage 25%")]


async def test_an_outbox_post_whose_answer_was_lost_is_not_posted_again_underneath(stage: Stage) -> None:
    """The post lands and the connection drops before its answer: slack_sdk's connection-error retry would post it
    a second time; the outbox's call raises instead, and the message is there once."""
    stage.slack.faults.add({"method": "chat.postMessage", "lands": True, "drop": True, "count": 1})
    with pytest.raises(SlackUnreachable):
        await stage.gateway.send(DEPLOYS, "rollout #3 of nba-grading-service", marker=3)
    assert stage.seen(VIEWER) == [("message", "rollout #3 of nba-grading-service")]
    assert stage.slack.workspace.calls["chat.postMessage"] == 1
    assert await stage.gateway.find_marked(DEPLOYS, 3, thread_ts=None, oldest=time.time() - 60) is not None


async def test_a_command_post_waits_out_429_and_a_read_is_made_again_after_a_dropped_connection(stage: Stage) -> None:
    stage.slack.faults.add({"method": "chat.postMessage", "status": 429, "retry_after": 1, "count": 1})
    started = time.monotonic()
    await stage.gateway.post(DEPLOYS, "prediction-worker: healthy")
    assert time.monotonic() - started >= 1, "Slack's Retry-After waited out"
    stage.slack.faults.add({"method": "conversations.info", "drop": True, "count": 1})
    info = await stage.gateway.client.conversations_info(channel=DEPLOYS)
    assert info["channel"]["id"] == DEPLOYS
    assert stage.slack.workspace.calls["conversations.info"] == 1, "the dropped call never reached Slack"
    stage.slack.faults.add({"method": "chat.postMessage", "drop": True, "count": 1})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await stage.gateway.post(DEPLOYS, "nba-grading-service: healthy")
    assert stage.seen(VIEWER) == [("message", "prediction-worker: healthy")], "a write is not made again"


async def test_a_marked_message_is_found_pages_back_in_the_channel_and_in_its_thread(stage: Stage) -> None:
    """conversations.history and .replies page by `cursor` from `oldest` (https://docs.slack.dev/reference/methods/
    conversations.history#pagination, https://docs.slack.dev/reference/methods/conversations.replies): a message
    with 450 after it is on the third page of 200, and the search reads them all."""
    stage.slack.workspace.limits.tier3_per_min = 50
    since = time.time() - 1
    posted = await stage.gateway.send(DEPLOYS, "rollout #9 of prediction-worker", marker=9)
    for n in range(450):
        stage.slack.workspace.post(DEPLOYS, LEAD, f"chatter {n}")
    assert await stage.gateway.find_marked(DEPLOYS, 9, thread_ts=None, oldest=since) == posted.ts
    assert stage.slack.workspace.calls["conversations.history"] == 3
    assert await stage.gateway.find_marked(DEPLOYS, 10, thread_ts=None, oldest=since) is None

    await asyncio.sleep(1)  # the channel's one post a second
    reply = await stage.gateway.send(DEPLOYS, "stage 5% passed", marker=10, thread_ts=posted.ts)
    for n in range(450):
        stage.slack.workspace.post(DEPLOYS, BOT.id if n % 2 else LEAD, f"watching {n}", thread_ts=posted.ts)
    assert await stage.gateway.find_marked(DEPLOYS, 10, thread_ts=posted.ts, oldest=since) == reply.ts
    assert await stage.gateway.find_marked(DEPLOYS, 10, thread_ts=posted.ts, oldest=float(reply.ts)) is None, \
        "oldest is exclusive"
    assert stage.slack.workspace.calls["conversations.replies"] >= 4


async def test_posts_past_a_channels_burst_arrive_late_and_in_order(stage: Stage) -> None:
    """chat.postMessage "will generally allow an app to post 1 message per second to a specific channel"
    (https://docs.slack.dev/reference/methods/chat.postMessage#rate-limiting)."""
    started = time.monotonic()
    for text in ("Rollout started", "Stage 5%"):
        await stage.gateway.post(DEPLOYS, text)
    assert time.monotonic() - started >= 1
    assert stage.seen(VIEWER) == [("message", "Rollout started"), ("message", "Stage 5%")]


async def test_a_spent_response_url_falls_back_to_an_ephemeral_for_the_invoker(stage: Stage) -> None:
    stage.slack.workspace.limits.response_url_uses = 1
    url = stage.response_url()
    with stage.gateway.answering(url, DEPLOYS, ONCALL):
        await stage.gateway.respond(url, "Plan for prediction-worker")
        await stage.gateway.respond(url, "Deployed prediction-worker")
    assert stage.seen() == [("ephemeral", "Plan for prediction-worker"), ("ephemeral", "Deployed prediction-worker")]
    assert stage.slack.workspace.calls["chat.postEphemeral"] == 1
    assert stage.seen(VIEWER) == []


async def test_an_expired_response_url_falls_back_to_an_ephemeral_for_the_invoker(stage: Stage) -> None:
    stage.slack.workspace.limits.response_url_lifetime_s = 0.05
    url = stage.response_url()
    await asyncio.sleep(0.06)
    with stage.gateway.answering(url, DEPLOYS, ONCALL):
        await stage.gateway.respond(url, ":x: Nothing was deployed", in_channel=True)
    assert stage.seen() == [("ephemeral", ":x: Nothing was deployed")]
    assert stage.seen(VIEWER) == []


async def test_a_refused_response_url_nobody_is_answering_through_is_only_logged(
        stage: Stage, caplog: pytest.LogCaptureFixture) -> None:
    stage.slack.workspace.limits.response_url_uses = 0
    url = stage.response_url()
    with caplog.at_level(logging.WARNING, logger="bot.adapters.slack"):
        await stage.gateway.respond(url, "Too late for this one")
    assert "response_url refused the reply: HTTP 404" in caplog.text
    assert stage.seen() == []
    assert stage.slack.workspace.calls["chat.postEphemeral"] == 0
