"""Events API deliveries taken once across instances, on SQLite and PostgreSQL: of two instances (two stores on one
database) given the same event_id at once, exactly one acts; a retry an hour and more later is a new delivery."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.adapters.event_store import KEEP, SeenEvents
from bot.adapters.store import Store

NOW = datetime.now(UTC)


async def test_of_two_instances_given_one_event_at_once_one_acts(store: Store, database_url: str) -> None:
    other = Store(database_url)
    try:
        taken = await asyncio.gather(*(SeenEvents(s).first("Ev0AB12CD34", NOW) for s in (store, other) * 3))
    finally:
        other.close()
    assert sorted(taken) == [False] * 5 + [True]
    assert await SeenEvents(store).first("Ev0OTHER001", NOW), "another event is its own"


async def test_ids_are_kept_past_slacks_retries_and_then_pruned(store: Store) -> None:
    seen = SeenEvents(store)
    assert await seen.first("Ev0AB12CD34", NOW)
    assert not await seen.first("Ev0AB12CD34", NOW + timedelta(minutes=6)), "Slack's last retry, 5 min on"
    assert await seen.first("Ev0NEW00001", NOW + KEEP + timedelta(seconds=1))
    assert await seen.first("Ev0AB12CD34", NOW + KEEP + timedelta(seconds=2)), "pruned once past KEEP"
