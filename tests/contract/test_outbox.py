"""The outbox against the Slack emulator at Slack's published pace: nothing lost, nothing twice, threads in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.adapters.outbox import Message, Outbox
from bot.adapters.slack import SlackGateway
from bot.adapters.store import Store
from bot.engine.outbox_sender import OutboxSender
from sandbox.serving import stop
from tests import figures
from tests.contract.slack_stage import DEPLOYS, Slack, slack_api


@pytest.fixture
async def slack() -> AsyncIterator[Slack]:
    """chat.postMessage at Slack's special limit: about one a second per channel, a burst of a few
    (https://docs.slack.dev/reference/methods/chat.postMessage)."""
    emulator, listener = await slack_api(post_per_channel_per_s=2.0, post_burst=2)
    yield emulator
    await stop(listener)


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    store = Store(f"sqlite:///{tmp_path / 'chatops.db'}")
    store.migrate()
    return Outbox(store)


def gateway(slack: Slack) -> SlackGateway:
    return SlackGateway(slack.workspace.bot_token, base_url=f"{slack.url}/api/")


def thread_texts(slack: Slack) -> list[list[str]]:
    parents = slack.workspace.parents(DEPLOYS)
    return [[p.text, *(r.text for r in p.replies)] for p in parents]


async def test_a_burst_of_replies_arrives_once_each_in_order_through_429s(slack: Slack, outbox: Outbox) -> None:
    messages = [Message("incident:1", "post", DEPLOYS, "prediction-worker is unhealthy")]
    messages += [Message("incident:1", "reply", DEPLOYS, f"update {n}") for n in range(8)]
    messages += [Message("digest:morning", "post", DEPLOYS, "Morning digest")]
    await asyncio.to_thread(outbox.add, messages)
    sender = OutboxSender(outbox, gateway(slack), "bot-a", idle_s=0.05)
    running = asyncio.create_task(sender.run())
    try:
        for _ in range(400):
            if await asyncio.to_thread(outbox.pending) == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        running.cancel()
    assert await asyncio.to_thread(outbox.pending) == 0
    threads = thread_texts(slack)
    assert ["prediction-worker is unhealthy", *(f"update {n}" for n in range(8))] in threads
    assert ["Morning digest"] in threads and len(threads) == 2, "nothing lost, nothing twice"
    assert slack.workspace.calls["chat.postMessage"] > 10, "Slack answered 429 along the way: more calls than posts"
    figures.count("outbox messages delivered through Slack's 429s, once each and in order", len(messages))


async def test_a_sender_killed_after_slack_took_the_message_is_not_repeated_by_the_next(
        slack: Slack, outbox: Outbox) -> None:
    await asyncio.to_thread(outbox.add, [Message("incident:2", "post", DEPLOYS, "nba-grading-service is down"),
                                         Message("incident:2", "reply", DEPLOYS, "acknowledged")])
    now = datetime.now(UTC)
    (row,) = await asyncio.to_thread(outbox.claim, "bot-a", now, 5.0)
    await gateway(slack).post(DEPLOYS, row.message.text, marker=row.id)  # bot-a dies before marking it sent
    later = now + timedelta(seconds=6)
    taker = OutboxSender(outbox, gateway(slack), "bot-b", clock=lambda: later)
    assert await taker.drain_once() == 1
    assert await taker.drain_once() == 1
    assert thread_texts(slack) == [["nba-grading-service is down", "acknowledged"]]


async def test_a_row_given_up_at_shutdown_is_sent_by_the_next_sender_at_once_and_once(
        slack: Slack, outbox: Outbox) -> None:
    """Cloud Run's SIGTERM leaves 10 s (https://cloud.google.com/run/docs/container-contract#lifecycle): an instance
    that was sending when it stopped gives its rows up rather than leave them leased for the next one to wait out."""
    await asyncio.to_thread(outbox.add, [Message("rollout:7", "post", DEPLOYS, "rollout #7 of nba-grading-service"),
                                         Message("rollout:7", "reply", DEPLOYS, "stage 5% passed")])
    now = datetime.now(UTC)
    (row,) = await asyncio.to_thread(outbox.claim, "bot-a", now, 30.0)
    await gateway(slack).post(DEPLOYS, row.message.text, marker=row.id)  # Slack took it; bot-a stops before marking
    assert await asyncio.to_thread(outbox.release, "bot-a", now) == 1
    taker = OutboxSender(outbox, gateway(slack), "bot-b", clock=lambda: now + timedelta(seconds=1))
    assert await taker.drain_once() == 1, "not held until bot-a's 30 s lease ran out"
    assert await taker.drain_once() == 1
    assert thread_texts(slack) == [["rollout #7 of nba-grading-service", "stage 5% passed"]]
