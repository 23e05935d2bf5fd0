"""Sends the outbox to Slack: each thread in order, several threads at once, every row exactly once.

Slack's 429s are waited out by slack_sdk's retry handler (Retry-After); when it gives up, or Slack answers
5xx or does not answer, the row goes back with a growing delay and the rest of its thread waits behind it.
An answer that will never change (a channel that is gone, a message Slack refuses) gives the row up, with
the error kept, rather than blocking its thread forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from slack_sdk.errors import SlackApiError

from bot.adapters.outbox import Outbox, Queued
from bot.adapters.slack import SlackGateway
from bot.adapters.store import StoreUnavailable

log = logging.getLogger(__name__)

_TRANSIENT = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
                        "request_timeout"})
"""Slack errors that may go away (https://api.slack.com/methods/chat.postMessage#errors)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class OutboxSender:
    def __init__(self, outbox: Outbox, slack: SlackGateway, owner: str, *, lease_s: float = 30.0,
                 idle_s: float = 1.0, concurrency: int = 4, clock: Callable[[], datetime] = utcnow) -> None:
        self.outbox = outbox
        self.slack = slack
        self.owner = owner
        self.lease_s = lease_s
        self.idle_s = idle_s
        self.clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                sent = await self.drain_once()
            except StoreUnavailable as exc:
                log.error("outbox: %s", exc)
                sent = 0
            except Exception:
                log.exception("outbox pass failed")
                sent = 0
            if sent:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.idle_s)
            self._wake.clear()

    async def hand_over(self, within_s: float) -> None:
        """Shutting down: send what is due while there is time, then give up the rows still being sent, so the
        next instance sends them at once rather than when their lease runs out."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, within_s)):
                while await self.drain_once():
                    pass
        try:
            released = await asyncio.to_thread(self.outbox.release, self.owner, self.clock())
        except StoreUnavailable as exc:
            log.error("outbox: could not give up the rows being sent (their leases run out by themselves): %s", exc)
        else:
            if released:
                log.info("shutting down: gave up %d outbox row(s) being sent", released)

    async def drain_once(self) -> int:
        """Send the head of every thread that is due; returns how many rows went out."""
        rows = await asyncio.to_thread(self.outbox.claim, self.owner, self.clock(), self.lease_s)
        results = await asyncio.gather(*(self._guarded(row) for row in rows))
        return sum(results)

    async def _guarded(self, row: Queued) -> int:
        async with self._slots:
            try:
                return await self.send(row)
            except StoreUnavailable:
                raise
            except Exception:
                log.exception("outbox row %s: send failed", row.id)
                await asyncio.to_thread(self.outbox.retry, row.id, self.owner, self._later(row.attempts), "bug")
                return 0

    def _later(self, attempts: int) -> datetime:
        return self.clock() + timedelta(seconds=min(300.0, 2.0 ** min(attempts, 8)))

    async def send(self, row: Queued) -> int:
        message = row.message
        root = (message.channel, message.thread_ts) if message.thread_ts else None
        if message.action != "post" and root is None:
            root = await asyncio.to_thread(self.outbox.thread_root, message.thread_key)
            if root is None:  # its thread's first message was given up: it cannot be threaded
                await asyncio.to_thread(self.outbox.give_up, row.id, self.owner, "the thread's first message failed")
                return 0
        try:
            ts = await self._deliver(row, root)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or exc.response.status_code)
            status = exc.response.status_code
            if error in _TRANSIENT or status >= 500 or status == 429:
                await asyncio.to_thread(self.outbox.retry, row.id, self.owner, self._later(row.attempts), error)
                log.warning("outbox row %s: Slack said %s; trying again later", row.id, error)
            else:
                await asyncio.to_thread(self.outbox.give_up, row.id, self.owner, error)
                log.error("outbox row %s for %s: Slack refused it for good (%s)", row.id, message.channel, error)
            return 0
        except (OSError, TimeoutError) as exc:
            await asyncio.to_thread(self.outbox.retry, row.id, self.owner, self._later(row.attempts), str(exc))
            return 0
        await asyncio.to_thread(self.outbox.sent, row.id, self.owner, ts, self.clock())
        return 1

    async def _deliver(self, row: Queued, root: tuple[str, str] | None) -> str:
        message = row.message
        if message.action == "update":
            assert root is not None
            await self.slack.update(root[0], root[1], message.text, message.blocks or None,
                                    attachments=message.attachments or None)
            return root[1]
        thread_ts = root[1] if root is not None else None
        channel = root[0] if root is not None else message.channel
        if row.state == "sending" or row.attempts > 1:  # a sender died or a call went unanswered: did Slack get it?
            found = await self.slack.find_marked(channel, row.id, thread_ts=thread_ts,
                                                 oldest=row.created_at.timestamp() - 1)
            if found is not None:
                return found
        posted = await self.slack.post(channel, message.text, message.blocks or None, thread_ts=thread_ts,
                                       attachments=message.attachments or None, marker=row.id)
        return posted.ts
