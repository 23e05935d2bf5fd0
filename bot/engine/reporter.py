"""What a rollout tells Slack: its one message, updated only when what it shows changed, and its thread."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError

from bot.adapters.slack import SlackGateway
from bot.adapters.store import Store, StoredRollout
from bot.domain.rollout import Note, Rollout
from bot.render.rollout import RunbookLink, note_reply, rollout_message

log = logging.getLogger(__name__)


class RolloutReporter:
    def __init__(self, slack: SlackGateway, store: Store, runbook: RunbookLink) -> None:
        self.slack = slack
        self.store = store
        self.runbook = runbook
        self._shown: dict[int, str] = {}

    async def publish(self, stored: StoredRollout, rollout: Rollout, notes: Sequence[Note] = ()) -> str | None:
        """Post or update the rollout's message, then its thread replies; returns the message's ts."""
        rendered = rollout_message(rollout)
        shown = json.dumps([rendered.text, rendered.attachments], sort_keys=True)
        ts = stored.message_ts
        try:
            if ts is None:
                posted = await self.slack.post(stored.channel, rendered.text, attachments=rendered.attachments)
                ts = posted.ts
                await asyncio.to_thread(self.store.set_message, rollout.id, posted.channel, posted.ts)
            elif self._shown.get(rollout.id) != shown:
                await self.slack.update(stored.channel, ts, rendered.text, attachments=rendered.attachments)
            self._shown[rollout.id] = shown
            for note in notes:
                reply = note_reply(rollout, note, self.runbook)
                await self.slack.post(stored.channel, reply.text, reply.blocks, thread_ts=ts)
        except SlackApiError as exc:
            log.warning("could not tell Slack about rollout %s: %s", rollout.id, exc.response.get("error"))
        if rollout.state.ended and rollout.pending is None:
            self._shown.pop(rollout.id, None)
        return ts
