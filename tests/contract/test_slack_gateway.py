"""The bot's Slack gateway against the emulator's published limits: a rate-limited call lands once Retry-After
has passed (https://docs.slack.dev/apis/web-api/rate-limits), and a reply whose response_url is spent or expired
(https://api.slack.com/interactivity/handling#message_responses) reaches the invoker as an ephemeral message."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bot.adapters.slack import SlackGateway
from sandbox.serving import Listener, start, stop
from sandbox.slack_user import slack_user_app
from tests.contract.slack_stage import DEPLOYS, ONCALL, VIEWER, Slack, slack_api


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


async def test_an_update_past_the_tier_waits_out_retry_after_and_lands(stage: Stage) -> None:
    """chat.update is Tier 3 (https://docs.slack.dev/reference/methods/chat.update), here 1 call a second."""
    posted = await stage.gateway.post(DEPLOYS, "Stage 5%")
    await stage.gateway.update(DEPLOYS, posted.ts, "Stage 25%")
    started = time.monotonic()
    await stage.gateway.update(DEPLOYS, posted.ts, "Stage 50%")
    assert time.monotonic() - started >= 1
    assert stage.seen(VIEWER) == [("message", "Stage 50%")]
    assert stage.slack.workspace.calls["chat.update"] == 3, "one 429, then the retry"


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
