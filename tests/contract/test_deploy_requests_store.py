"""Deploy requests on SQLite and PostgreSQL: each transition happens once whoever races for it, an approval counts
once per person, a queued request and its rollout are created together or not at all, and what each transition
tells Slack is in the outbox with it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.adapters.deploy_store import DeployRequests, Stale, request_thread
from bot.adapters.outbox import Message, Outbox
from bot.adapters.store import RolloutConflict, Store
from bot.domain.deploy_queue import QueuedDeploy, RequestState, may_approve
from bot.domain.rollout import State
from tests.contract.test_rollout_store import new

NOW = datetime.now(UTC)
ONCALL, LEAD = "U07ONCALL01", "U07LEAD0001"
APPROVERS = [f"U07APPROVE{i}" for i in range(6)]


def asked(service: str = "prediction-worker", **changes: object) -> QueuedDeploy:
    request = QueuedDeploy(id=0, service=service, image=f"us-west2-docker.pkg.dev/p/r/{service}:v41",
                           strategy="canary", requested_by=ONCALL, channel="C07DEPLOYS1", created_at=NOW,
                           state=RequestState.AWAITING, needed=1, approvers="deployer",
                           expires_at=NOW + timedelta(hours=4))
    return replace(request, **changes)  # type: ignore[arg-type]


def said(request: QueuedDeploy) -> list[Message]:
    return [Message(request_thread(request.id), "reply", request.channel, f"#{request.id} {request.state.value}")]


def as_approver(user: str):  # type: ignore[no-untyped-def]
    return lambda request: may_approve(request, user, approver=True)


def test_waiting_requests_come_in_queue_order_with_approval_still_awaited_last(store: Store) -> None:
    requests = DeployRequests(store)
    awaiting = requests.add(asked(), said)
    later = requests.add(asked(state=RequestState.QUEUED, queued_at=NOW + timedelta(seconds=2)), said)
    sooner = requests.add(asked(state=RequestState.QUEUED, queued_at=NOW + timedelta(seconds=1)), said)
    other = requests.add(asked("nba-grading-service", state=RequestState.QUEUED, queued_at=NOW), said)
    assert [r.id for r in requests.waiting("prediction-worker")] == [sooner.id, later.id, awaiting.id]
    assert [r.id for r in requests.waiting()] == [other.id, sooner.id, later.id, awaiting.id]
    assert Outbox(store).pending(request_thread(awaiting.id)) == 1, "said with the insert"


def test_many_approvers_at_once_queue_the_request_once(store: Store) -> None:
    requests = DeployRequests(store)
    request = requests.add(asked(), said)
    with ThreadPoolExecutor(len(APPROVERS)) as pool:
        results = list(pool.map(lambda user: requests.approve(request.id, user, NOW, as_approver(user), said),
                                APPROVERS))
    counted = [r for r in results if isinstance(r, QueuedDeploy)]
    assert len(counted) == 1 and counted[0].state is RequestState.QUEUED
    assert all(r == f"Request #{request.id} is already approved; nothing to approve." for r in results
               if isinstance(r, str))
    after = requests.get(request.id)
    assert after is not None and after.state is RequestState.QUEUED and len(after.approvals) == 1
    assert after.queued_at is not None


def test_an_approval_counts_once_per_person_and_never_the_requesters(store: Store) -> None:
    requests = DeployRequests(store)
    request = requests.add(asked(needed=2), said)
    assert requests.approve(request.id, ONCALL, NOW, as_approver(ONCALL), said) == (
        f"You asked for request #{request.id}; someone else must approve it (a member of the *deployer* role).")
    first = requests.approve(request.id, LEAD, NOW, as_approver(LEAD), said)
    assert isinstance(first, QueuedDeploy) and first.state is RequestState.AWAITING and first.approvals == (LEAD,)
    again = requests.approve(request.id, LEAD, NOW, as_approver(LEAD), said)
    assert again == f"You already approved request #{request.id}; it needs 1 more, from someone else."
    second = requests.approve(request.id, APPROVERS[0], NOW, as_approver(APPROVERS[0]), said)
    assert isinstance(second, QueuedDeploy) and second.state is RequestState.QUEUED
    assert set(second.approvals) == {LEAD, APPROVERS[0]}
    decided = [e for e in store.audit(limit=10) if e.action == "approve"]
    assert [e.detail for e in reversed(decided)] == [f"request #{request.id}: approval 1 of 2",
                                                     f"request #{request.id}: approval 2 of 2"]


def test_a_queued_request_and_its_rollout_are_created_together_once(store: Store) -> None:
    requests = DeployRequests(store)
    queued = requests.add(asked(state=RequestState.QUEUED, queued_at=NOW), said)
    stored = store.create_rollout(new(), "C07DEPLOYS1", requests.claim_start(queued, said))
    started = requests.get(queued.id)
    assert started is not None and (started.state, started.rollout_id) == (RequestState.STARTED, stored.rollout.id)
    with pytest.raises(Stale):
        store.create_rollout(new("nba-grading-service"), "C07DEPLOYS1", requests.claim_start(queued, said))
    assert [r.rollout.service for r in store.rollouts()] == ["prediction-worker"], "the loser created nothing"


def test_a_start_that_meets_an_open_rollout_leaves_the_request_queued(store: Store) -> None:
    requests = DeployRequests(store)
    store.create_rollout(new(), "C07DEPLOYS1")
    queued = requests.add(asked(state=RequestState.QUEUED, queued_at=NOW), said)
    with pytest.raises(RolloutConflict):
        store.create_rollout(new(), "C07DEPLOYS1", requests.claim_start(queued, said))
    assert requests.get(queued.id) == queued
    assert Outbox(store).pending(request_thread(queued.id)) == 1, "only what its insert said"


def test_a_deploy_that_starts_at_once_is_recorded_with_its_rollout(store: Store) -> None:
    requests = DeployRequests(store)
    at_once = asked(needed=0, state=RequestState.QUEUED)
    stored = store.create_rollout(new(), "C07DEPLOYS1", requests.started_with(at_once))
    row = requests.get(1)
    assert row is not None and (row.state, row.rollout_id) == (RequestState.STARTED, stored.rollout.id)
    assert requests.waiting() == []


def test_a_request_ends_once_and_only_from_the_states_allowed(store: Store) -> None:
    requests = DeployRequests(store)
    request = requests.add(asked(), said)
    queued = requests.add(asked(state=RequestState.QUEUED, queued_at=NOW), said)
    assert requests.end(queued.id, RequestState.DENIED, LEAD, "no", NOW, said,
                        only_from=(RequestState.AWAITING,)) is None, "a denial needs it awaiting approval"
    denied = requests.end(request.id, RequestState.DENIED, LEAD, "not before tip-off", NOW, said)
    assert denied is not None and (denied.state, denied.decided_by, denied.reason) == (
        RequestState.DENIED, LEAD, "not before tip-off")
    assert requests.end(request.id, RequestState.CANCELLED, ONCALL, "", NOW, said) is None
    assert requests.get(request.id) == denied
    with ThreadPoolExecutor(4) as pool:
        ends = list(pool.map(lambda _: requests.end(queued.id, RequestState.CANCELLED, ONCALL, "", NOW, said),
                             range(4)))
    assert len([e for e in ends if e is not None]) == 1
    assert Outbox(store).pending(request_thread(queued.id)) == 2, "its insert and its one end"


def test_only_requests_awaiting_approval_past_their_time_are_due_to_expire(store: Store) -> None:
    requests = DeployRequests(store)
    lapsed = requests.add(asked(expires_at=NOW - timedelta(seconds=1)), said)
    requests.add(asked(), said)
    requests.add(asked(state=RequestState.QUEUED, queued_at=NOW, expires_at=NOW - timedelta(seconds=1)), said)
    assert requests.due_to_expire(NOW) == [lapsed.id]


def test_a_hold_is_said_once_and_resumed_once(store: Store) -> None:
    requests = DeployRequests(store)
    message = [Message("rollout:9", "reply", "C07DEPLOYS1", "the queue holds")]
    with ThreadPoolExecutor(3) as pool:
        holds = list(pool.map(lambda _: requests.hold("prediction-worker", 9, NOW, message, "held"), range(3)))
    assert sorted(holds) == [False, False, True]
    assert Outbox(store).pending("rollout:9") == 1
    assert not requests.resumed("prediction-worker", 9)
    assert requests.resume("prediction-worker", 9, LEAD, NOW) is True
    assert requests.resume("prediction-worker", 9, ONCALL, NOW) is False
    assert requests.resumed("prediction-worker", 9)
    assert requests.resume("prediction-worker", 10, LEAD, NOW) is True, "a resume before the hold was recorded"
    assert requests.hold("prediction-worker", 10, NOW, message, "held") is False, "and then never said"


def test_what_holds_a_queued_request_is_said_once_and_again_only_when_it_changes(store: Store) -> None:
    """Every instance's dispatcher finds the queue's head held at every tick: its requester hears of each cause once."""
    requests = DeployRequests(store)
    waiting = requests.add(asked(state=RequestState.QUEUED, needed=0, queued_at=NOW), lambda _: [])
    lock = ":lock: prediction-worker is locked by <@U07LEAD0001> until 2026-12-06 20:00 UTC: backfill"
    with ThreadPoolExecutor(3) as pool:
        told = list(pool.map(lambda _: requests.held(waiting, lock, NOW, said), range(3)))
    assert sorted(told) == [False, False, True] and Outbox(store).pending(request_thread(waiting.id)) == 1
    assert requests.held(waiting, lock, NOW, said) is False, "the next tick says nothing"
    window = ":snowflake: prediction-worker is in freeze window `pre-game` until 2026-12-06 19:00 EST"
    assert requests.held(waiting, window, NOW, said) is True, "a new cause is said"
    assert Outbox(store).pending(request_thread(waiting.id)) == 2
    ended = requests.add(asked(state=RequestState.CANCELLED, needed=0), lambda _: [])
    assert requests.held(ended, lock, NOW, said) is False, "a request no longer queued hears nothing"


def test_the_last_rollout_of_a_service_is_what_the_queue_looks_at(store: Store) -> None:
    requests = DeployRequests(store)
    assert requests.last_rollout("prediction-worker") is None
    first = store.create_rollout(new(), "C07DEPLOYS1")
    (claim,) = store.claim_due("bot-a", None, lease_s=30)
    ended = replace(claim.rollout, state=State.ROLLED_BACK, ended_at=NOW)
    assert store.save(claim, ended)
    last = requests.last_rollout("prediction-worker")
    assert last is not None and (last.id, last.state, last.open, last.failed) == (
        first.rollout.id, "rolled_back", False, True)
