"""The deploy queue's decisions: who may approve, deny and cancel; what a new /deploy becomes; whether the head of a
service's queue may start now, waits, or holds after a rollout that was rolled back or failed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.domain.deploy_queue import (
    Await,
    Enqueue,
    Hold,
    LastRollout,
    QueuedDeploy,
    RequestState,
    Start,
    StartNow,
    Wait,
    approved,
    may_approve,
    may_cancel,
    may_deny,
    next_start,
    on_arrival,
    queue_position,
    shown_approvers,
)

T0 = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
ONCALL, LEAD, OTHER = "U07ONCALL01", "U07LEAD0001", "U07OTHER001"


def request(**changes: object) -> QueuedDeploy:
    asked = QueuedDeploy(id=7, service="prediction-worker", image="us-west2-docker.pkg.dev/p/r/prediction-worker:v41",
                         strategy="canary", requested_by=ONCALL, channel="C07DEPLOYS1", created_at=T0,
                         state=RequestState.AWAITING, needed=1, approvers="deployer",
                         expires_at=T0 + timedelta(hours=4))
    return replace(asked, **changes)  # type: ignore[arg-type]


def rollout(state: str = "analysing", ended: datetime | None = None) -> LastRollout:
    return LastRollout(id=40, state=state, open=ended is None, ended_at=ended, requested_by=LEAD, tag="v40")


def test_the_requester_never_approves_their_own_deploy() -> None:
    why = may_approve(request(), ONCALL, approver=True)
    assert why == ("You asked for request #7; someone else must approve it (a member of the *deployer* role).")


def test_only_an_approver_approves_and_the_refusal_names_who_may() -> None:
    assert may_approve(request(), OTHER, approver=False) == (
        "Approving prediction-worker deploys needs the *deployer* role; ask one of them, or the on-call.")
    by_group = may_approve(request(approvers="S07SREONCAL"), OTHER, approver=False)
    assert by_group is not None and "<!subteam^S07SREONCAL>" in by_group
    assert may_approve(request(), LEAD, approver=True) is None


def test_an_approval_counts_once_per_person() -> None:
    two = request(needed=2, approvals=(LEAD,))
    assert may_approve(two, LEAD, approver=True) == (
        "You already approved request #7; it needs 1 more, from someone else.")
    assert not approved(two) and not approved(request(needed=2, approvals=(LEAD, LEAD)))
    assert approved(request(needed=2, approvals=(LEAD, OTHER)))


def test_nothing_is_approved_or_denied_once_it_has_moved_on() -> None:
    denied = request(state=RequestState.DENIED, decided_by=LEAD, reason="not before tip-off")
    assert may_approve(denied, OTHER, approver=True) == (
        f"Request #7 is already denied by <@{LEAD}>: not before tip-off; nothing to approve.")
    started = request(state=RequestState.STARTED, rollout_id=41, decided_by="chatops")
    assert may_deny(started, LEAD, approver=True) == "Request #7 is already started as rollout #41; nothing to deny."
    assert may_approve(request(state=RequestState.QUEUED), LEAD, approver=True) == (
        "Request #7 is already approved; nothing to approve.")


def test_a_requester_cancels_rather_than_denies_and_others_deny_only_as_approvers() -> None:
    assert may_deny(request(), ONCALL, approver=True) == "It is your own request: `/queue cancel 7` withdraws it."
    assert may_deny(request(), OTHER, approver=False) == "Denying prediction-worker deploys needs the *deployer* role."
    assert may_deny(request(), LEAD, approver=True) is None


def test_the_requester_or_whoever_may_roll_back_cancels() -> None:
    queued = request(state=RequestState.QUEUED)
    assert may_cancel(queued, ONCALL, may_roll_back=False) is None
    assert may_cancel(queued, LEAD, may_roll_back=True) is None
    assert may_cancel(queued, OTHER, may_roll_back=False) == (
        f"Only <@{ONCALL}>, who asked for it, or someone who may roll back prediction-worker can cancel request #7.")
    assert may_cancel(request(state=RequestState.EXPIRED, reason="not approved within 4 h", decided_by="chatops"),
                      ONCALL, may_roll_back=True) == (
        "Request #7 is already expired: not approved within 4 h; nothing to cancel.")


def test_a_new_deploy_starts_waits_for_approval_or_joins_the_queue_behind_what_is_ahead() -> None:
    assert on_arrival(needs_approval=True, ahead=0, rollout_open=False) == Await()
    assert on_arrival(needs_approval=False, ahead=0, rollout_open=False) == StartNow()
    assert on_arrival(needs_approval=False, ahead=0, rollout_open=True) == Enqueue(2), "#1 is the running rollout"
    assert on_arrival(needs_approval=False, ahead=2, rollout_open=True) == Enqueue(4)
    assert on_arrival(needs_approval=False, ahead=1, rollout_open=False) == Enqueue(2), "behind a held queue"


def test_the_head_starts_only_when_no_rollout_is_open() -> None:
    head = request(state=RequestState.QUEUED, queued_at=T0)
    assert next_start(None, None, resumed=False) == Wait("nothing is queued")
    assert next_start(head, rollout(), resumed=False) == Wait("rollout #40 is in progress")
    assert next_start(head, None, resumed=False) == Start(head)
    assert next_start(head, rollout("promoted", T0 + timedelta(minutes=5)), resumed=False) == Start(head)


def test_the_queue_holds_after_a_rollback_or_failure_it_waited_behind_until_resumed() -> None:
    head = request(state=RequestState.QUEUED, queued_at=T0)
    for state in ("rolled_back", "failed"):
        ended = rollout(state, T0 + timedelta(minutes=5))
        decision = next_start(head, ended, resumed=False)
        assert isinstance(decision, Hold) and decision.rollout_id == 40 and decision.request == head
        assert decision.reason == f"rollout #40 (`v40`) {state.replace('_', ' ')}"
        assert next_start(head, ended, resumed=True) == Start(head)


def test_a_failure_before_the_request_was_queued_does_not_hold_it() -> None:
    """A fix deployed after a failed rollout (or approved after it) is what people want to start, not to hold."""
    head = request(state=RequestState.QUEUED, queued_at=T0 + timedelta(minutes=10))
    assert next_start(head, rollout("rolled_back", T0 + timedelta(minutes=5)), resumed=False) == Start(head)


def test_positions_count_the_running_rollout_as_first_and_skip_what_awaits_approval() -> None:
    waiting = [request(id=3, state=RequestState.QUEUED), request(id=5, state=RequestState.QUEUED), request(id=6)]
    assert [queue_position(waiting, i, True) for i in (3, 5, 6)] == [2, 3, 0]
    assert queue_position(waiting, 5, False) == 2


def test_approvers_are_shown_as_slack_draws_them() -> None:
    assert shown_approvers("deployer") == "the *deployer* role"
    assert shown_approvers("S07SREONCAL") == "<!subteam^S07SREONCAL>"
