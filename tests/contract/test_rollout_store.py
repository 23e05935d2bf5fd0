"""Rollout rows on SQLite and PostgreSQL: one open rollout per service, leases, fencing, commands."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import alembic.command
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bot.adapters.rollout_json import dumps
from bot.adapters.store import RolloutConflict, Store, alembic_config
from bot.domain.rollout import Answer, Command, Rollout, State, Write, make_split
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


def test_commands_are_a_queue_that_keeps_every_one_until_it_is_answered(store: Store) -> None:
    """A rollback then a promote a moment later while another instance holds the lease: both are kept (the promote
    used to overwrite the rollback in one column), and each ends applied or refused with its answer."""
    created = store.create_rollout(new(next_check_at=NOW + timedelta(hours=1)), "C1")
    assert store.claim_due("bot-a", NOW, lease_s=30) == [], "not due yet"
    rollback = store.request(created.rollout.id, Command("rollback", "U07LEAD0001"))
    promote = store.request(created.rollout.id, Command("promote", "U07ONCALL01"))
    assert rollback is not None and promote is not None and rollback.id < promote.id
    (claim,) = store.claim_due("bot-a", None, lease_s=30)
    assert claim.rollout.commands == (rollback, promote)
    late = store.request(created.rollout.id, Command("pause", "U07ONCALL02"))
    answers = (Answer(rollback, True), Answer(promote, False, "a rollback came first"))
    assert store.save(claim, replace(claim.rollout, commands=(), state=State.PAUSED), answers=answers)
    assert [(c.action, outcome, answer) for c, outcome, answer in store.answers(created.rollout.id)] == [
        ("rollback", "applied", ""), ("promote", "refused", "a rollback came first"), ("pause", None, "")]
    loaded = store.rollout(created.rollout.id)
    assert loaded is not None and loaded.rollout.commands == (late,), "a command that came during the tick waits"


def test_a_rollout_is_not_closed_while_a_command_it_never_saw_waits(store: Store) -> None:
    created = store.create_rollout(new(), "C1")
    (claim,) = store.claim_due("bot-a", None, lease_s=30)
    unseen = store.request(created.rollout.id, Command("promote", "U1"))
    assert store.save(claim, replace(claim.rollout, state=State.PROMOTED, ended_at=NOW))
    (again,) = store.claim_due("bot-a", None, lease_s=30)
    assert again.rollout.commands == (unseen,), "still open, and due, so the promote gets its answer"
    assert unseen is not None
    assert store.save(again, again.rollout, answers=(Answer(unseen, False, "the rollout ended"),))
    assert store.open_rollout("prediction-worker") is None


def test_no_write_is_made_on_a_lease_that_ran_out(store: Store) -> None:
    """The save before a Cloud Run write checks the lease on the database's clock and renews it for the write. The
    leases are seconds long, not tenths: on a loaded machine a claim and a save can take longer than 0.2 s."""
    store.create_rollout(new(), "C1")
    (claim,) = store.claim_due("bot-a", None, lease_s=3.0)
    assert store.save(claim, claim.rollout, renew_s=1.0), "still held: renewed, for a second only"
    time.sleep(1.5)
    assert not store.save(claim, claim.rollout, renew_s=30), "ran out on the database's clock: no write"
    (taken,) = store.claim_due("bot-b", None, lease_s=30)
    assert store.save(taken, taken.rollout, renew_s=30)
    assert not store.save(claim, claim.rollout), "and the old holder's save is fenced off"


def test_an_ended_rollout_stays_open_until_its_last_write_lands(store: Store) -> None:
    created = store.create_rollout(new(), "C1")
    (claim,) = store.claim_due("bot-a", NOW, lease_s=30)
    write = Write("set_traffic", make_split({"svc-00002-abc": 100}), False)
    rolled = replace(claim.rollout, state=State.ROLLED_BACK, ended_at=NOW, pending=write)
    assert store.save(claim, rolled)
    with pytest.raises(RolloutConflict):
        store.create_rollout(new(), "C1")
    (claim,) = store.claim_due("bot-a", NOW, lease_s=30)
    assert store.save(claim, replace(claim.rollout, pending=None))
    assert store.open_rollout("prediction-worker") is None
    assert store.request(created.rollout.id, Command("promote", "U1")) is None, "a closed rollout takes no commands"
    store.create_rollout(new(), "C1")


def test_a_command_waiting_in_the_old_column_is_queued_by_the_migration(database_url: str) -> None:
    """Revision 0005 moves a command left in `rollouts.command` by a bot of the last version into the queue."""
    config = alembic_config()
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            alembic.command.upgrade(config, "0003_alerts")
            conn.execute(text(
                "INSERT INTO rollouts (service, state, open, next_check_at, generation, created_at, updated_at, "
                "requested_by, image, channel, data, command) VALUES ('prediction-worker', 'analysing', true, "
                ":at, 0, :at, :at, 'U1', 'img', 'C1', :data, :command)"),
                {"at": NOW, "data": dumps(new()), "command": '{"action": "rollback", "user": "U07LEAD0001", "to": ""}'})
        store = Store(database_url)
        try:
            store.migrate()
            (stored,) = store.rollouts(open_only=True)
            assert [(c.action, c.user, outcome) for c, outcome, _ in store.answers(stored.rollout.id)] == [
                ("rollback", "U07LEAD0001", None)]
        finally:
            store.close()
    finally:
        engine.dispose()
