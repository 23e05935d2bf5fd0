"""State the bot's instances share through the database, on SQLite and PostgreSQL: the Cloud Logging read budget
(one per project, however many instances spend it), the post-deploy watch's baseline, and incident cycles (each
open-resolve cycle its own record, so MTTR counts a flap's every cycle).

Each "instance" is a Store of its own on the same database, as three `chatops serve` processes would have."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bot.adapters.budget_store import BudgetStore
from bot.adapters.incident_store import IncidentStore, Stale
from bot.adapters.rollout_json import encode
from bot.adapters.store import Store, alembic_config
from bot.adapters.watch_store import WatchStore
from bot.domain.incidents import AlertPolicy, Failure, Incident, observe
from bot.engine.budget import ReadBudget

PER_MINUTE = 30  # a bucket of 3 reads, refilled at one every 2 s
T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


class Clock:
    """The instances' wall clock, moved by the test (their clocks agree, as NTP keeps them on Cloud Run)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def instances(store: Store, database_url: str) -> Iterator[list[Store]]:
    others = [Store(database_url) for _ in range(2)]
    yield [store, *others]
    for other in others:
        other.close()


def budgets(instances: list[Store], clock: Clock) -> list[ReadBudget]:
    return [ReadBudget(PER_MINUTE, buckets=BudgetStore(s), clock=clock) for s in instances]


def test_three_instances_taking_at_once_share_one_bucket(instances: list[Store]) -> None:
    clock = Clock()
    spenders = budgets(instances, clock) * 4  # twelve threads, four per instance

    with ThreadPoolExecutor(12) as pool:
        taken = sum(pool.map(lambda budget: budget.take(), spenders))
    assert taken == 3, "one bucket of a tenth of a minute's reads, not one per instance or per thread"
    assert [b.available() for b in spenders[:3]] == [0, 0, 0]
    assert spenders[0].spent == 3


def test_over_a_minute_three_instances_stay_within_one_budget(instances: list[Store]) -> None:
    clock = Clock()
    spenders = budgets(instances, clock)
    taken = []
    for second in range(60):  # each instance tries a read every second, and a two-page read now and then
        clock.now = T0 + timedelta(seconds=second)
        for spender in spenders:
            if spender.take():
                taken.append(second)
                if second % 20 == 0:
                    spender.charge(1)
    assert spenders[2].spent <= PER_MINUTE + 3, "a minute's refill plus the full bucket it started with"
    assert len(taken) >= PER_MINUTE - 3, "and the budget is spent, not lost between instances"


def test_a_quota_refusal_seen_by_one_instance_stops_them_all_for_a_minute(instances: list[Store]) -> None:
    clock = Clock()
    first, second, third = budgets(instances, clock)
    first.exhausted()
    clock.now = T0 + timedelta(seconds=59)
    assert (second.take(), third.available()) == (False, 0)
    clock.now = T0 + timedelta(seconds=61)
    assert second.take() and third.take()


def test_an_instance_whose_clock_is_behind_refills_nothing(instances: list[Store]) -> None:
    ahead, behind = Clock(), Clock()
    first = ReadBudget(PER_MINUTE, buckets=BudgetStore(instances[0]), clock=ahead)
    late = ReadBudget(PER_MINUTE, buckets=BudgetStore(instances[1]), clock=behind)
    ahead.now = T0 + timedelta(seconds=10)
    assert sum(first.take() for _ in range(5)) == 3
    behind.now = T0 - timedelta(seconds=30)
    assert not late.take(), "a clock behind the bucket's does not mint reads"


def test_the_first_baseline_of_a_watch_stands_for_every_instance(instances: list[Store]) -> None:
    one, two = WatchStore(instances[0]), WatchStore(instances[1])
    assert one.baseline(7) is None
    one.keep_baseline(7, 1.5, T0)
    two.keep_baseline(7, 9.0, T0 + timedelta(seconds=1))
    assert two.baseline(7) == one.baseline(7) == 1.5


def test_a_flap_saves_two_cycles_and_a_stale_save_none(instances: list[Store]) -> None:
    policy = AlertPolicy(open_after=1, resolve_after=1, cooldown_s=900)
    one, two = IncidentStore(instances[0]), IncidentStore(instances[1])
    failing = (Failure("db", "refused"),)
    for minute, failures in ((0, failing), (40, ()), (45, failing), (47, ())):
        stored = one.current("svc")
        step = observe(stored.incident if stored else None, "svc", failures, T0 + timedelta(minutes=minute), policy)
        one.save(stored, step.incident, "C1", T0 + timedelta(minutes=minute), cycle=step.cycle)
    found = two.cycles_since(T0)
    assert [(c.number, c.detected_at, c.resolved_at) for c in found] == [
        (0, T0, T0 + timedelta(minutes=40)), (1, T0 + timedelta(minutes=45), T0 + timedelta(minutes=47))]

    stale = one.current("svc")
    assert stale is not None
    reopened = observe(stale.incident, "svc", failing, T0 + timedelta(minutes=50), policy)
    one.save(stale, reopened.incident, "C1", T0 + timedelta(minutes=50))
    closing = observe(reopened.incident, "svc", (), T0 + timedelta(minutes=51), policy)
    with pytest.raises(Stale):
        two.save(stale, closing.incident, "C1", T0 + timedelta(minutes=51), cycle=closing.cycle)
    assert len(two.cycles_since(T0)) == 2, "the loser's cycle went with its transaction"


def test_migrating_keeps_the_cycle_of_incidents_resolved_before_it(database_url: str) -> None:
    config = alembic_config()
    engine = create_engine(database_url, poolclass=NullPool)
    resolved = replace(Incident("svc", id=1, state="resolved", detected_at=T0, opened_at=T0 + timedelta(minutes=2),
                                acknowledged_at=T0 + timedelta(minutes=3), resolved_at=T0 + timedelta(minutes=9),
                                reopened=1))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003_alerts")
        conn.execute(text("INSERT INTO incidents (id, service, state, active, channel, opened_at, resolved_at, "
                          "updated_at, version, data) VALUES (1, 'svc', 'resolved', false, 'C1', :opened, :resolved, "
                          ":resolved, 3, :data)"),
                     {"opened": resolved.opened_at, "resolved": resolved.resolved_at, "data": encode(resolved)})
    engine.dispose()
    store = Store(database_url)
    try:
        store.migrate()
        (cycle,) = IncidentStore(store).cycles_since(T0)
        assert (cycle.number, cycle.detected_at, cycle.acknowledged_at, cycle.resolved_at) == (
            1, T0, T0 + timedelta(minutes=3), T0 + timedelta(minutes=9))
    finally:
        store.close()
