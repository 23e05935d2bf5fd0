"""Lock rows on SQLite and PostgreSQL: one holder per service however many ask at once, expiry (said once when the
time is up), release by the holder only, the announcement kept with the change, and a command's override kept in the
queue."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import select

from bot.adapters.cloudrun import CloudRunGateway
from bot.adapters.lock_store import LockStore
from bot.adapters.outbox import Message
from bot.adapters.store import Store
from bot.adapters.tables import OutboxRow
from bot.config import Config
from bot.domain.change_gate import Lock
from bot.domain.rollout import Command
from bot.engine.dispatcher import Dispatcher
from tests.contract.test_rollout_store import new

NOW = datetime.now(UTC)


def told(text: str) -> Message:
    return Message(f"lock:{text}", "post", "C07DEPLOYS1", text)


def posts(store: Store) -> list[str]:
    with store.reading() as session:
        return list(session.scalars(select(OutboxRow.text).order_by(OutboxRow.id)))


async def test_two_people_locking_one_service_at_once_end_with_one_holder(store: Store) -> None:
    locks = LockStore(store)
    first, second = await asyncio.gather(
        locks.take(Lock("prediction-worker", "U07ONCALL01", "retraining", NOW), [told("oncall locked")]),
        locks.take(Lock("prediction-worker", "U07LEAD0001", "game night", NOW), [told("lead locked")]))
    assert first == second, "both are told the same holder"
    assert await locks.locks(NOW) == [first]
    assert posts(store) == [f"{'oncall' if first.holder == 'U07ONCALL01' else 'lead'} locked"], "one announcement"


async def test_a_lock_ends_at_its_end_and_only_its_holder_releases_it(store: Store) -> None:
    locks = LockStore(store)
    until = NOW + timedelta(hours=2)
    mine = await locks.take(Lock("prediction-worker", "U07LEAD0001", "game night", NOW, until))
    assert await locks.locks(until - timedelta(seconds=1)) == [mine] and await locks.locks(until) == []
    again = Lock("prediction-worker", "U07LEAD0001", "extended", NOW, until + timedelta(hours=1))
    assert await locks.take(again) == again, "the holder changes its own lock"
    other = Lock("prediction-worker", "U07ONCALL01", "mine now", until + timedelta(hours=2))
    assert await locks.take(other) == other, "a lock past its end is replaced"
    assert not await locks.release(again, NOW, [told("unlocked")]), "the lead's lock was replaced"
    assert await locks.release(other, NOW, [told("broken")])
    assert await locks.locks(NOW) == [] and posts(store) == ["broken"]


async def test_a_lock_taken_again_is_not_released_as_the_earlier_one(store: Store) -> None:
    """An Unlock button names the lock it was drawn for: a click on it must not release the lock its holder took
    again since (a new reason, a new end), read back from the database to the microsecond."""
    locks = LockStore(store)
    first = await locks.take(Lock("prediction-worker", "U07LEAD0001", "game night", NOW.replace(microsecond=123456)))
    (read,) = await locks.locks(NOW)
    assert read == first, "read back to the microsecond, as the button carries it"
    again = await locks.take(Lock("prediction-worker", "U07LEAD0001", "overtime", NOW + timedelta(minutes=5)))
    assert not await locks.release(first, NOW + timedelta(minutes=6), [told("unlocked")])
    assert await locks.locks(NOW + timedelta(minutes=6)) == [again] and posts(store) == []
    assert await locks.release(again, NOW + timedelta(minutes=6), [told("unlocked")])
    assert posts(store) == ["unlocked"]


def test_an_override_is_kept_with_its_command_until_answered(store: Store) -> None:
    created = store.create_rollout(new(), "C07DEPLOYS1")
    queued = store.request(created.rollout.id, Command("resume", "U07LEAD0001", override="odds feed fix"))
    assert queued is not None and queued.override == "odds feed fix"
    (claim,) = store.claim_due("bot-a", None, lease_s=30)
    assert claim.rollout.commands == (queued,)


async def test_a_lock_whose_time_is_up_is_said_to_have_ended_once_however_many_instances_look(
        store: Store, example_config: Config) -> None:
    """Every instance's dispatcher looks for locks past their end; the deploy channel hears of each once, and a lock
    without an end, or still running, is left alone."""
    locks = LockStore(store)
    ends = NOW + timedelta(hours=1)
    await locks.take(Lock("prediction-worker", "U07LEAD0001", "retraining the model", NOW, ends))
    await locks.take(Lock("nba-grading-service", "U07ONCALL01", "backfill", NOW, ends + timedelta(hours=1)))
    await locks.take(Lock("all", "U07LEAD0001", "release week", NOW))
    later = ends + timedelta(seconds=1)
    instances = [Dispatcher(config=example_config, store=store, cloudrun=cast(CloudRunGateway, None), interval_s=1,
                            clock=lambda: later) for _ in range(3)]
    await asyncio.gather(*(dispatcher.tick() for dispatcher in instances))
    assert posts(store) == [
        ":unlock: <@U07LEAD0001>'s lock on *prediction-worker* ended at "
        f"{ends:%Y-%m-%d %H:%M} UTC (it was for: retraining the model). Deploys by others are no longer refused; "
        "`/lock prediction-worker ...` takes it again."]
    assert [lock.service for lock in await locks.locks(later)] == ["all", "nba-grading-service"]
    await instances[0].tick()
    assert len(posts(store)) == 1, "said once"
