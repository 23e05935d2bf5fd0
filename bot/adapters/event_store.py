"""The Events API deliveries already taken, shared by every instance through the database.

Slack retries a delivery it thinks failed (no 2xx within 3 s, a connection error) up to three times, "nearly
immediately", after 1 minute and after 5 minutes, each with `X-Slack-Retry-Num` and `X-Slack-Retry-Reason`
(https://docs.slack.dev/apis/events-api/#retries), and a retry may reach another instance behind the load balancer.
Each event has an `event_id` unique to the workspace, the same in every retry of it. The first instance to insert the
id acts; every other delivery of it is acknowledged and dropped. Rows older than the retry schedule are pruned as new
ones arrive.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from bot.adapters.store import Store
from bot.adapters.tables import SlackEventRow

KEEP = timedelta(hours=1)
"""Slack's last retry comes 5 minutes after the first failure; an hour holds it with a wide margin."""


class SeenEvents:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def first(self, event_id: str, now: datetime) -> bool:
        """True for the first delivery of `event_id` (this caller acts on it), False for any later one."""
        return await asyncio.to_thread(self._first, event_id, now)

    def _first(self, event_id: str, now: datetime) -> bool:
        try:
            with self.store.writing() as session:
                session.execute(delete(SlackEventRow).where(SlackEventRow.received_at < now - KEEP))
                session.add(SlackEventRow(event_id=event_id, received_at=now))
        except IntegrityError:
            return False
        return True
