"""Sends the outbox to Slack: each thread in order, several threads at once, every row exactly once.

Exactly once rests on three things:
- the lease: a claimed row is the sender's while its lease lasts; a heartbeat renews it every third of the lease
  while the row is in flight, and each call that changes Slack (a post, a redraw) is made only just after a
  renewal the sender won, with a lease at least twice Slack's call timeout, so no other sender can take the row
  while that call may still land. A sender that lost the row (its lease ran out and another took it) leaves it:
  it neither posts it nor marks it;
- no retries underneath: the gateway makes each call once (bot/adapters/slack.py). A 429 ("ratelimited") is
  waited out here, the row going back for the Retry-After Slack asked for while the rest of its thread waits
  behind it; a 5xx or no answer sends the row back with a growing delay;
- the marker search: a row whose earlier call may have reached Slack (no answer, a 5xx, or a sender that died or
  lost it mid-send) is first looked for in Slack, by the row id each post carries, over every message since the
  row was written, and marked sent with what is found instead of being posted again.
An upload (a chart, a timeline) is drawn here, off the event loop, from the figures its row holds, and shared into
its thread with Slack's upload flow; its marker is in the file's name, since a file share carries no metadata.
A redraw with a later redraw of the same message queued behind it is not made (chat.update is Tier 3, 50 a minute
for the whole workspace), so a thread held back by 429s catches up with fewer calls. An answer that will never
change (a channel that is gone, a message Slack refuses) gives the row up, with the error kept, rather than blocking
its thread forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from slack_sdk.errors import SlackApiError

from bot.adapters.outbox import Outbox, Queued
from bot.adapters.slack import SlackGateway, retry_after
from bot.adapters.store import StoreUnavailable
from bot.render.uploads import file_content

log = logging.getLogger(__name__)

_TRANSIENT = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
                        "request_timeout"})
"""Slack errors that may go away (https://api.slack.com/methods/chat.postMessage#errors)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class LeaseLost(Exception):
    """Another sender holds the row now: whatever this one was doing with it, it must not touch Slack or the row."""


class OutboxSender:
    def __init__(self, outbox: Outbox, slack: SlackGateway, owner: str, *, lease_s: float = 30.0,
                 idle_s: float = 1.0, concurrency: int = 4, clock: Callable[[], datetime] = utcnow) -> None:
        if lease_s < 2 * slack.timeout_s:
            raise ValueError(f"the outbox lease ({lease_s:g} s) must outlast two of Slack's call timeouts "
                             f"({slack.timeout_s} s each), or another sender could take a row whose post may land")
        self.outbox = outbox
        self.slack = slack
        self.owner = owner
        self.lease_s = lease_s
        self.idle_s = idle_s
        self.clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._in_flight: set[int] = set()

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
            idle = await self._idle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle)
            self._wake.clear()

    async def _idle(self) -> float:
        """Until the next row is due (a 429's Retry-After is often shorter than `idle_s`), at most `idle_s`."""
        try:
            due = await asyncio.to_thread(self.outbox.next_due)
        except StoreUnavailable:
            return self.idle_s
        return self.idle_s if due is None else min(self.idle_s, max(0.0, (due - self.clock()).total_seconds()))

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
        if not rows:
            return 0
        self._in_flight |= {row.id for row in rows}
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            results = await asyncio.gather(*(self._guarded(row) for row in rows))
        finally:
            heartbeat.cancel()
        return sum(results)

    async def _heartbeat(self) -> None:
        """Renew the lease of every row in flight, every third of the lease, until the pass ends."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            rows = set(self._in_flight)
            try:
                held = await self._renew(rows)
            except StoreUnavailable as exc:
                log.error("outbox: could not renew the lease of the rows being sent: %s", exc)
                continue
            for lost in rows - held:
                if lost in self._in_flight:  # not one that was done with while the renewal ran
                    self._lost(lost)

    async def _renew(self, row_ids: set[int]) -> set[int]:
        return await asyncio.to_thread(self.outbox.renew, row_ids, self.owner, self.clock(), self.lease_s)

    def _lost(self, row_id: int) -> None:
        log.warning("outbox row %s: its lease ran out and another sender took it; leaving it to them", row_id)
        self._in_flight.discard(row_id)

    async def _hold(self, row: Queued) -> None:
        """Renew the row's lease now, before a call that changes Slack: the call starts with a whole lease ahead."""
        if row.id not in await self._renew({row.id}):
            self._lost(row.id)
            raise LeaseLost(row.id)

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
            finally:
                self._in_flight.discard(row.id)

    def _later(self, attempts: int) -> datetime:
        return self.clock() + timedelta(seconds=min(300.0, 2.0 ** min(attempts, 8)))

    async def send(self, row: Queued) -> int:
        """1 once the row is in Slack (sent now, or found there), 0 if it goes back, is given up, or was lost."""
        try:
            return await self._send(row)
        except LeaseLost:
            return 0

    async def _send(self, row: Queued) -> int:
        message = row.message
        root = (message.channel, message.thread_ts) if message.thread_ts else None
        if message.action != "post" and root is None:
            root = await asyncio.to_thread(self.outbox.thread_root, message.thread_key)
            if root is None:  # its thread's first message was given up: it cannot be threaded
                await asyncio.to_thread(self.outbox.give_up, row.id, self.owner, "the thread's first message failed")
                return 0
        if message.action == "update" and await asyncio.to_thread(self.outbox.superseded, row.id, message.thread_key):
            assert root is not None
            await asyncio.to_thread(self.outbox.sent, row.id, self.owner, root[1], self.clock())
            return 1  # a later redraw shows more: one chat.update fewer against Slack's 50 a minute
        calling = False
        try:
            ts = await self._landed(row, root)
            if ts is None:
                await self._hold(row)
                calling = True
                ts = await self._call(row, root)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or exc.response.status_code)
            status = exc.response.status_code
            wait = retry_after(exc)
            if wait is not None:
                await asyncio.to_thread(self.outbox.retry, row.id, self.owner,
                                        self.clock() + timedelta(seconds=wait), error, reached_slack=not calling)
                log.info("outbox row %s: Slack asked to wait %g s (%s)", row.id, wait, error)
            elif error in _TRANSIENT or status >= 500:
                await asyncio.to_thread(self.outbox.retry, row.id, self.owner, self._later(row.attempts), error)
                log.warning("outbox row %s: Slack said %s; trying again later", row.id, error)
            else:
                await asyncio.to_thread(self.outbox.give_up, row.id, self.owner, error)
                log.error("outbox row %s for %s: Slack refused it for good (%s)", row.id, message.channel, error)
            return 0
        except (OSError, TimeoutError) as exc:
            await asyncio.to_thread(self.outbox.retry, row.id, self.owner, self._later(row.attempts), str(exc))
            log.warning("outbox row %s: no answer from Slack (%s); trying again later", row.id, exc)
            return 0
        await asyncio.to_thread(self.outbox.sent, row.id, self.owner, ts, self.clock())
        return 1

    async def _landed(self, row: Queued, root: tuple[str, str] | None) -> str | None:
        """The ts of the row's message if an earlier call may have posted it and it is in Slack."""
        if row.message.action == "update" or (row.state != "sending" and row.attempts <= 1):
            return None  # a redraw can be made again; a row no call has reached Slack with cannot be there
        channel = root[0] if root is not None else row.message.channel
        thread_ts, oldest = root[1] if root is not None else None, row.created_at.timestamp() - 1
        if row.message.file is not None:
            return await self.slack.find_uploaded(channel, str(row.message.file["filename"]), row.id,
                                                  thread_ts=thread_ts, oldest=oldest)
        return await self.slack.find_marked(channel, row.id, thread_ts=thread_ts, oldest=oldest)

    async def _call(self, row: Queued, root: tuple[str, str] | None) -> str:
        message = row.message
        if message.action == "update":
            assert root is not None
            await self.slack.redraw(root[0], root[1], message.text, message.blocks or None,
                                    attachments=message.attachments or None)
            return root[1]
        if message.action == "upload" and message.file is not None:
            assert root is not None
            content = await asyncio.to_thread(file_content, message.file)
            return await self.slack.upload(root[0], root[1], str(message.file["filename"]),
                                           str(message.file.get("title") or ""), content, marker=row.id,
                                           before_sharing=lambda: self._hold(row))
        posted = await self.slack.send(root[0] if root is not None else message.channel, message.text,
                                       marker=row.id, blocks=message.blocks or None,
                                       thread_ts=root[1] if root is not None else None,
                                       attachments=message.attachments or None)
        return posted.ts
