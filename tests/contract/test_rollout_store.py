"""Rollout rows on SQLite and PostgreSQL: one open rollout per service, leases, fencing, commands."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.adapters.store import RolloutConflict, Store
from bot.domain.rollout import Command, Rollout, State, Write, make_split
from tests.unit.test_rollout import rollout as domain_rollout

NOW = datetime.now(UTC)


def new(service: str = "prediction-worker", **changes: Any) -> Rollout:
    return replace(domain_rollout(service=service, created_at=NOW, next_check_at=NOW), **changes)


def test_one_open_rollout_per_service(store: Store) -> None:
    first = store.create_rollout(new(), "C07DEPLOYS1")
    assert first.rollout.id > 0 and first.channel == "C07DEPLOYS1"
    with pytest.raises(RolloutConflict) as conflict:
        store.create_rollout(new(), "C07DEPLOYS1")
    assert conflict.value.existing.rollout.id == first.rollout.id
    other = store.create_rollout(new("nba-grading-service"), "C07DEPLOYS1")
    assert other.rollout.id != first.rollout.id
    assert [s.rollout.service for s in store.rollouts(open_only=True)] == ["nba-grading-service", "prediction-worker"]


def test_a_lease_keeps_other_instances_out_until_it_expires(store: Store) -> None:
    created = store.create_rollout(new(), "C1")
    (mine,) = store.claim_due("bot-a", NOW, lease_s=30)
    assert mine.rollout.id == created.rollout.id and mine.generation == 1
    assert store.claim_due("bot-b", NOW + timedelta(seconds=10), lease_s=30) == []
    (again,) = store.claim_due("bot-a", NOW + timedelta(seconds=10), lease_s=30)
    assert again.generation == 2, "the owner renews its own lease"
    (taken,) = store.claim_due("bot-b", NOW + timedelta(seconds=41), lease_s=30)
    assert taken.lease_owner == "bot-b" and taken.generation == 3


def test_a_save_after_losing_the_lease_is_refused(store: Store) -> None:
    store.create_rollout(new(), "C1")
    (stale,) = store.claim_due("bot-a", NOW, lease_s=1)
    (fresh,) = store.claim_due("bot-b", NOW + timedelta(seconds=5), lease_s=30)
    moved = replace(stale.rollout, state=State.ANALYSING, stage=0)
    assert store.save(stale, moved) is False
    assert store.save(fresh, moved) is True
    loaded = store.rollout(moved.id)
    assert loaded is not None and loaded.rollout.state is State.ANALYSING


def test_a_command_is_consumed_once_and_a_newer_one_is_kept(store: Store) -> None:
    created = store.create_rollout(new(next_check_at=NOW + timedelta(hours=1)), "C1")
    assert store.claim_due("bot-a", NOW, lease_s=30) == [], "not due yet"
    store.request(created.rollout.id, Command("pause", "U07ONCALL01"))
    (claim,) = store.claim_due("bot-a", datetime.now(UTC) + timedelta(seconds=1), lease_s=30)
    assert claim.rollout.command == Command("pause", "U07ONCALL01")
    store.request(created.rollout.id, Command("rollback", "U07LEAD0001"))
    assert store.save(claim, replace(claim.rollout, command=None, state=State.PAUSED))
    loaded = store.rollout(created.rollout.id)
    assert loaded is not None and loaded.rollout.command == Command("rollback", "U07LEAD0001")


def test_an_ended_rollout_stays_open_until_its_last_write_lands(store: Store) -> None:
    created = store.create_rollout(new(), "C1")
    (claim,) = store.claim_due("bot-a", NOW, lease_s=30)
    write = Write("set_traffic", make_split({"svc-00002-abc": 100}), False, ())
    rolled = replace(claim.rollout, state=State.ROLLED_BACK, ended_at=NOW, pending=write)
    assert store.save(claim, rolled)
    with pytest.raises(RolloutConflict):
        store.create_rollout(new(), "C1")
    (claim,) = store.claim_due("bot-a", NOW, lease_s=30)
    assert store.save(claim, replace(claim.rollout, pending=None))
    assert store.open_rollout("prediction-worker") is None
    assert store.request(created.rollout.id, Command("promote", "U1")) is None, "an ended rollout takes no commands"
    store.create_rollout(new(), "C1")
