"""What a rollout tells Slack: its one message, updated only when what it shows changed, and its thread.

Posting happens off the reconciler's tick, one queue per rollout: a Slack that answers 429 delays the
messages, never the next check of any rollout. The queue is also the one place a rollout's message is
created, so it is posted once, however many ticks run before Slack answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from slack_sdk.errors import SlackApiError

from bot.adapters.slack import SlackGateway
from bot.adapters.store import Store, StoredRollout
from bot.domain.rollout import Note, Rollout, spoken
from bot.render.rollout import RunbookLink, note_reply, rollout_message

log = logging.getLogger(__name__)


@dataclass
class _Outbox:
    channel: str
    ts: str | None
    shown: str = ""
    pending: list[tuple[Rollout, tuple[Note, ...]]] = field(default_factory=list)
    worker: asyncio.Task[None] | None = None


def created_note(rollout: Rollout) -> Note:
    stages = " → ".join(f"{p}%" for p in rollout.plan.stages)
    why = (" It is a direct deploy: Cloud Run cannot start a new service with no traffic on its first revision."
           if rollout.new_service else "")
    return Note("created", f"<@{rollout.requested_by}> is deploying `{rollout.image}` as `{rollout.candidate}`: "
                           f"{stages}, {spoken(rollout.plan.window_s)} per stage.{why}")


class RolloutReporter:
    def __init__(self, slack: SlackGateway, store: Store, runbook: RunbookLink) -> None:
        self.slack = slack
        self.store = store
        self.runbook = runbook
        self._outboxes: dict[int, _Outbox] = {}

    def publish(self, stored: StoredRollout, rollout: Rollout, notes: Sequence[Note] = ()) -> None:
        """Queue the rollout's state and notes for Slack; returns at once."""
        outbox = self._outboxes.get(rollout.id)
        if outbox is None:
            outbox = self._outboxes[rollout.id] = _Outbox(stored.channel, stored.message_ts)
        outbox.pending.append((rollout, tuple(notes)))
        if outbox.worker is None or outbox.worker.done():
            outbox.worker = asyncio.create_task(self._drain(rollout.id, outbox), name=f"report-{rollout.id}")

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued message is out (shutdown, tests)."""
        workers = [o.worker for o in self._outboxes.values() if o.worker is not None and not o.worker.done()]
        if workers:
            await asyncio.wait(workers, timeout=timeout)

    async def _drain(self, rollout_id: int, outbox: _Outbox) -> None:
        finished = False
        while outbox.pending:
            rollout, notes = outbox.pending.pop(0)
            finished = rollout.state.ended and rollout.pending is None
            with contextlib.suppress(SlackApiError):
                await self._send(outbox, rollout, notes)
        if finished:
            self._outboxes.pop(rollout_id, None)

    async def _send(self, outbox: _Outbox, rollout: Rollout, notes: tuple[Note, ...]) -> None:
        rendered = rollout_message(rollout)
        shown = json.dumps([rendered.text, rendered.attachments], sort_keys=True)
        try:
            if outbox.ts is None:
                existing = await asyncio.to_thread(self.store.rollout, rollout.id)
                outbox.ts = existing.message_ts if existing else None
            if outbox.ts is None:
                posted = await self.slack.post(outbox.channel, rendered.text, attachments=rendered.attachments)
                outbox.ts = posted.ts
                await asyncio.to_thread(self.store.set_message, rollout.id, posted.channel, posted.ts)
                notes = (created_note(rollout), *notes)
            elif outbox.shown != shown:
                await self.slack.update(outbox.channel, outbox.ts, rendered.text, attachments=rendered.attachments)
            outbox.shown = shown
            for note in notes:
                reply = note_reply(rollout, note, self.runbook)
                await self.slack.post(outbox.channel, reply.text, reply.blocks, thread_ts=outbox.ts)
        except SlackApiError as exc:
            log.warning("could not tell Slack about rollout %s: %s", rollout.id, exc.response.get("error"))
            raise
