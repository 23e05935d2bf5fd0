"""The outbox against the Slack emulator at Slack's published pace and under its faults: nothing lost, nothing twice,
threads in order, whether Slack answers 429, loses an answer, or a sender is slower than its lease."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.adapters.outbox import Message, Outbox
from bot.adapters.slack import MARKER_EVENT, SlackGateway
from bot.adapters.store import Store
from bot.engine.outbox_sender import OutboxSender
from sandbox.serving import stop
from tests import figures
from tests.contract.slack_stage import DEPLOYS, LEAD, Slack, slack_api


@pytest.fixture
async def slack() -> AsyncIterator[Slack]:
    """chat.postMessage at Slack's special limit: about one a second per channel, a burst of a few
    (https://docs.slack.dev/reference/methods/chat.postMessage)."""
    emulator, listener = await slack_api(post_per_channel_per_s=2.0, post_burst=2)
    yield emulator
    await stop(listener)


@pytest.fixture
def outbox(migrated_sqlite: str) -> Outbox:
    return Outbox(Store(migrated_sqlite))


def gateway(slack: Slack, timeout_s: int = 10) -> SlackGateway:
    return SlackGateway(slack.workspace.bot_token, base_url=f"{slack.url}/api/", timeout_s=timeout_s)


def marked(slack: Slack) -> Counter[int]:
    """How many messages in #deploys (threads included) carry each outbox row's id."""
    found: Counter[int] = Counter()
    for parent in slack.workspace.parents(DEPLOYS):
        for message in (parent, *parent.replies):
            if message.metadata and message.metadata["event_type"] == MARKER_EVENT:
                found[int(message.metadata["event_payload"]["id"])] += 1
    return found


async def sent_all(outbox: Outbox, *senders: OutboxSender, within_s: float = 20.0) -> None:
    """Run the senders until nothing is left to send."""
    running = [asyncio.create_task(sender.run()) for sender in senders]
    try:
        deadline = time.monotonic() + within_s
        while await asyncio.to_thread(outbox.pending):
            assert time.monotonic() < deadline, f"rows still unsent after {within_s} s"
            await asyncio.sleep(0.05)
    finally:
        for task in running:
            task.cancel()


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
    await gateway(slack).send(DEPLOYS, row.message.text, marker=row.id)  # bot-a dies before marking it sent
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
    await gateway(slack).send(DEPLOYS, row.message.text, marker=row.id)  # Slack took it; bot-a stops before marking
    assert await asyncio.to_thread(outbox.release, "bot-a", now) == 1
    taker = OutboxSender(outbox, gateway(slack), "bot-b", clock=lambda: now + timedelta(seconds=1))
    assert await taker.drain_once() == 1, "not held until bot-a's 30 s lease ran out"
    assert await taker.drain_once() == 1
    assert thread_texts(slack) == [["rollout #7 of nba-grading-service", "stage 5% passed"]]


async def test_a_429_is_waited_out_by_the_outbox_for_its_retry_after_without_a_search(
        slack: Slack, outbox: Outbox) -> None:
    """A 429 says Slack did not act ("a Retry-After HTTP header containing the number of seconds until you can
    retry", https://docs.slack.dev/apis/web-api/rate-limits): the row goes back for that long, its thread waits
    behind it, nothing underneath retries, and the next attempt posts without looking for a message first."""
    slack.faults.add({"method": "chat.postMessage", "status": 429, "retry_after": 2, "count": 1})
    await asyncio.to_thread(outbox.add, [Message("incident:4", "post", DEPLOYS, "nba-grading-service is down"),
                                         Message("incident:4", "reply", DEPLOYS, "acknowledged")])
    sender = OutboxSender(outbox, gateway(slack), "bot-a")
    started = time.monotonic()
    assert await sender.drain_once() == 0
    assert await sender.drain_once() == 0, "neither the row nor its reply is due before Retry-After has passed"
    await sent_all(outbox, sender)
    assert time.monotonic() - started >= 2
    assert thread_texts(slack) == [["nba-grading-service is down", "acknowledged"]]
    assert slack.workspace.calls["chat.postMessage"] == 2, "each posted once; the 429 never reached Slack"
    assert slack.workspace.calls["conversations.history"] == 0, "no search for a message a 429 did not post"
    figures.count("outbox rows that waited out a Slack 429's Retry-After themselves")


async def test_a_post_whose_answer_was_lost_is_found_pages_back_and_not_posted_again(
        slack: Slack, outbox: Outbox) -> None:
    """The post and a thread reply land and their connections drop before Slack answers. 450 messages come after
    the post before the sender tries again (history is newest first), and 450 replies come into the thread between
    the reply's row being written and its landing (replies are oldest first): the search reads every page since
    the row was written, not only the first 200, finds each, and each is in Slack once."""
    slack.workspace.limits.tier3_per_min = 50
    await asyncio.to_thread(outbox.add, [Message("rollout:8", "post", DEPLOYS, "rollout #8 of prediction-worker"),
                                         Message("rollout:8", "reply", DEPLOYS, "stage 5% passed")])
    lost = slack.faults.add({"method": "chat.postMessage", "lands": True, "drop": True, "count": 2})
    now = datetime.now(UTC)
    sender = OutboxSender(outbox, gateway(slack), "bot-a", clock=lambda: now)

    assert await sender.drain_once() == 0, "no answer: the row goes back"
    (parent,) = slack.workspace.parents(DEPLOYS)
    for n in range(450):
        slack.workspace.post(DEPLOYS, LEAD, f"chatter {n}")
    now += timedelta(seconds=60)
    assert await sender.drain_once() == 1, "found in the channel's third page, marked sent"
    assert slack.workspace.calls["conversations.history"] == 3

    for n in range(450):
        slack.workspace.post(DEPLOYS, LEAD, f"watching {n}", thread_ts=parent.ts)
    assert await sender.drain_once() == 0, "no answer: the reply goes back"
    now += timedelta(seconds=60)
    assert await sender.drain_once() == 1, "found in the thread's third page, marked sent"
    assert slack.workspace.calls["conversations.replies"] == 3

    assert lost.hits == 2 and slack.workspace.calls["chat.postMessage"] == 2
    assert marked(slack) == Counter({1: 1, 2: 1}), "each row's message once"
    figures.count("outbox posts whose answer was lost, found pages back instead of posted twice", 2)


async def test_a_sender_slower_than_its_lease_keeps_its_rows_and_no_other_sends_them(
        slack: Slack, outbox: Outbox) -> None:
    """Four rows claimed at once by a sender that sends one at a time, each post taking 0.8 s, with a 2 s lease:
    the last is sent well after its claim's lease would have run out. The heartbeat holds them, so a second
    sender polling all the while takes none, and each is posted once."""
    await asyncio.to_thread(outbox.add, [Message(f"digest:{n}", "post", DEPLOYS, f"digest {n}") for n in range(4)])
    slack.faults.add({"method": "chat.postMessage", "latency_ms": 800})
    slow = OutboxSender(outbox, gateway(slack, timeout_s=1), "bot-a", lease_s=2.0, concurrency=1)
    other = OutboxSender(outbox, gateway(slack, timeout_s=1), "bot-b", lease_s=2.0)
    sending = asyncio.create_task(slow.drain_once())
    taken = 0
    while not sending.done():
        await asyncio.sleep(0.1)
        taken += await other.drain_once()
    assert await sending == 4 and taken == 0
    assert len(slack.workspace.parents(DEPLOYS)) == 4 and set(marked(slack).values()) == {1}
    figures.count("outbox rows held by a heartbeat past their first lease, sent once", 4)


async def test_a_sender_that_lost_its_lease_neither_posts_nor_marks_the_row(
        slack: Slack, outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    """The first sender claims a row and stalls past its lease (no heartbeat runs while a process is stopped); the
    second takes the row and sends it. The first, coming back to it, finds its lease gone before calling Slack."""
    await asyncio.to_thread(outbox.add, [Message("incident:5", "post", DEPLOYS, "prediction-worker is down")])
    now = datetime.now(UTC)
    (row,) = await asyncio.to_thread(outbox.claim, "bot-a", now, 20.0)
    later = now + timedelta(seconds=21)
    taker = OutboxSender(outbox, gateway(slack), "bot-b", clock=lambda: later)
    assert await taker.drain_once() == 1
    stalled = OutboxSender(outbox, gateway(slack), "bot-a", clock=lambda: later)
    with caplog.at_level(logging.WARNING, logger="bot.engine.outbox_sender"):
        assert await stalled.send(row) == 0
    assert [p.text for p in slack.workspace.parents(DEPLOYS)] == ["prediction-worker is down"]
    assert slack.workspace.calls["chat.postMessage"] == 1
    assert "another sender took it" in caplog.text
    assert await asyncio.to_thread(outbox.pending) == 0, "marked sent by the one that sent it"


def test_a_lease_shorter_than_two_slack_timeouts_is_refused(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="must outlast two of Slack's call timeouts"):
        OutboxSender(outbox, SlackGateway("unused", timeout_s=10), "bot-a", lease_s=15.0)


async def test_a_redraw_with_a_later_one_queued_is_not_made(slack: Slack, outbox: Outbox) -> None:
    """chat.update is Tier 3, 50 a minute for the whole workspace (https://docs.slack.dev/reference/methods/
    chat.update): a thread that fell behind makes only its last redraw, and its message shows that one."""
    await asyncio.to_thread(outbox.add, [Message("incident:7", "post", DEPLOYS, "prediction-worker: failing"),
                                         Message("incident:7", "update", DEPLOYS, "prediction-worker: acknowledged"),
                                         Message("incident:7", "reply", DEPLOYS, "resolved"),
                                         Message("incident:7", "update", DEPLOYS, "prediction-worker: resolved")])
    await sent_all(outbox, OutboxSender(outbox, gateway(slack), "bot-a", idle_s=0.05))
    assert thread_texts(slack) == [["prediction-worker: resolved", "resolved"]]
    assert slack.workspace.calls["chat.update"] == 1


async def test_an_upload_whose_sharing_answer_was_lost_is_found_by_its_name_and_not_shared_again(
        slack: Slack, outbox: Outbox) -> None:
    """A chart row: drawn by the sender from the figures it holds, uploaded with Slack's upload flow into its thread.
    files.completeUploadExternal shares the file and its connection drops before Slack answers: the next try finds
    the file in the thread by the row's marked name instead of sharing it a second time."""
    evidence = {"service": "prediction-worker", "candidate": "pw-00042", "stable": "pw-00041", "percent": 5,
                "outcome": "pass", "min_success_rate": 99.0, "max_p99_ms": 800.0, "min_requests": 20,
                "measured": [{"source": "request logs", "total": 400, "errors": 1, "p99_ms": 420.0}]}
    chart = {"filename": "prediction-worker-stage-5.png", "title": "stage 5%", "chart": "stage", "data": evidence}
    await asyncio.to_thread(outbox.add, [Message("rollout:9", "post", DEPLOYS, "rollout #9 of prediction-worker"),
                                         Message("rollout:9", "upload", DEPLOYS, "", file=chart)])
    lost = slack.faults.add({"method": "files.completeUploadExternal", "lands": True, "drop": True, "count": 1})
    now = datetime.now(UTC)
    sender = OutboxSender(outbox, gateway(slack), "bot-a", clock=lambda: now)
    assert await sender.drain_once() == 1, "the parent"
    assert await sender.drain_once() == 0, "no answer to the sharing: the row goes back"
    now += timedelta(seconds=60)
    assert await sender.drain_once() == 1, "found in the thread by its name, marked sent"
    (parent,) = slack.workspace.parents(DEPLOYS)
    shared = [f for reply in parent.replies for f in reply.files or []]
    assert lost.hits == 1 and slack.workspace.calls["files.completeUploadExternal"] == 1
    assert [f["name"] for f in shared] == ["prediction-worker-stage-5-2.png"], "shared once, named by its row"
    assert (slack.workspace.files.files[shared[0]["id"]].content or b"").startswith(b"\x89PNG"), "drawn by the sender"
