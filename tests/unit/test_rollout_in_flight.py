"""The state machine while Cloud Run is still moving: a rollback is a goal pursued until Cloud Run routes it, a
split chatops asked for earlier is never taken for a person's change, and commands are a queue that answers
every one of them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from bot.domain.rollout import (
    Answer,
    Command,
    Decision,
    Rollout,
    State,
    WriteResult,
    after_write,
    decide,
    make_split,
    restore,
)
from tests.unit.test_rollout import CANDIDATE, FAIL, PASS, PLAN, STABLE, T0, at, at_stage, live

FIVE = {STABLE: 95, CANDIDATE: 5}
HALF = {STABLE: 50, CANDIDATE: 50}
ALL_STABLE = {STABLE: 100}


def moving_to_half() -> Rollout:
    """Stage 1 passed; the 50% write was accepted (generation 8) and Cloud Run is routing it."""
    entered = decide(at_stage(0, next_check_at=at(60)), live(FIVE), at(60), PASS)
    assert entered.write is not None and entered.write.traffic == make_split(HALF)
    return after_write(entered.rollout, WriteResult("started", generation=8), at(61)).rollout


def rolled_back_while_routing() -> Decision:
    routing = live(FIVE, asked=HALF, generation=8, reconciling=True)
    decision = decide(replace(moving_to_half(), commands=(Command("rollback", "U2", id=1),)), routing, at(62))
    assert decision.rollout.state is State.ROLLED_BACK and decision.write is not None
    return decision


def test_a_rollback_answered_aborted_when_routing_ended_is_made_again_not_blamed_on_a_person() -> None:
    back = rolled_back_while_routing()
    aborted = after_write(back.rollout, WriteResult("conflict", status="ABORTED", message="etag mismatch"), at(63))
    routed_stage = live(HALF, generation=8)  # Cloud Run finished routing chatops' own 50% write
    again = decide(aborted.rollout, routed_stage, at(63))
    assert again.write is not None and again.write.traffic == make_split(ALL_STABLE), "the rollback is made again"
    assert again.rollout.state is State.ROLLED_BACK and again.rollout.pending is not None
    assert not [n for n in again.notes if "outside chatops" in n.text]
    done = after_write(again.rollout, WriteResult("done", generation=9, traffic=make_split(ALL_STABLE)), at(64))
    assert done.rollout.pending is None and done.rollout.traffic == make_split(ALL_STABLE)


def test_a_rollback_write_that_got_a_503_or_timed_out_is_pursued_until_cloud_run_routes_it() -> None:
    back = rolled_back_while_routing()
    failed = after_write(back.rollout, WriteResult("retry", message="503 Service Unavailable"), at(63))
    assert failed.rollout.pending is not None and failed.write is None
    (note,) = failed.notes
    assert "still trying" in note.text and "gcloud run services update-traffic svc" in note.text
    later = failed.rollout.next_check_at
    again = decide(failed.rollout, live(HALF, generation=8), later)
    assert again.write is not None and again.write.traffic == make_split(ALL_STABLE)
    landed_late = decide(failed.rollout, live(HALF, asked=ALL_STABLE, generation=9, reconciling=True), later)
    assert landed_late.write is None and landed_late.rollout.pending is not None, "a timeout that landed: wait"
    routed = decide(landed_late.rollout, live(ALL_STABLE, tagged=False, generation=9), later + timedelta(seconds=5))
    assert routed.rollout.pending is None and not routed.rollout.open


def test_the_progress_deadline_firing_while_a_stage_routes_rolls_back_and_keeps_at_it() -> None:
    stuck = replace(moving_to_half(), progress_at=at(0))
    expired = decide(stuck, live(FIVE, asked=HALF, generation=8, reconciling=True), at(601))
    assert expired.rollout.state is State.ROLLED_BACK and expired.write is not None
    aborted = after_write(expired.rollout, WriteResult("conflict", status="ABORTED"), at(602))
    again = decide(aborted.rollout, live(HALF, generation=8), at(602))
    assert again.write is not None and again.write.traffic == make_split(ALL_STABLE)


def test_a_stage_write_that_timed_out_but_landed_is_adopted_not_paused() -> None:
    entered = decide(at_stage(0, next_check_at=at(60)), live(FIVE), at(60), PASS)
    timed_out = after_write(entered.rollout, WriteResult("retry", message="deadline exceeded"), at(70))
    landed = decide(timed_out.rollout, live(HALF, generation=8), timed_out.rollout.next_check_at, PASS)
    assert landed.rollout.state is State.ANALYSING and landed.rollout.pending is None
    assert landed.rollout.traffic == make_split(HALF)


def test_only_a_split_chatops_never_asked_for_stops_a_rollback() -> None:
    back = rolled_back_while_routing()
    by_hand = decide(back.rollout, live({STABLE: 80, CANDIDATE: 20}, generation=12), at(63))
    assert by_hand.write is None and by_hand.rollout.pending is None
    assert "changed outside chatops while chatops was rolling it back" in by_hand.notes[0].text


def test_a_promote_a_moment_after_a_rollback_is_refused_naming_the_rollback() -> None:
    asked = T0 + timedelta(minutes=1)
    rollback = Command("rollback", "UALICE", id=1, at=asked)
    promote = Command("promote", "UBOB", id=2, at=asked + timedelta(seconds=0.3))
    decision = decide(at_stage(1, commands=(rollback, promote)), live(HALF), at(65))
    assert decision.rollout.state is State.ROLLED_BACK
    assert decision.write is not None and decision.write.traffic == make_split(ALL_STABLE)
    refused = next(a for a in decision.answers if a.command == promote)
    assert not refused.applied and "<@UALICE> at 03:01:00 UTC came first" in refused.text
    assert Answer(rollback, True) in decision.answers
    assert any("<@UBOB>" in n.text for n in decision.notes if n.kind == "refused"), "the thread tells Bob"


def test_a_command_left_on_a_rollout_that_closes_is_answered() -> None:
    promoted = decide(at_stage(2, next_check_at=at(60)), live({CANDIDATE: 100}), at(60), PASS)
    late = Command("pause", "UBOB", id=3)
    closing = after_write(replace(promoted.rollout, commands=(late,)),
                          WriteResult("done", generation=9, traffic=make_split({CANDIDATE: 100})), at(61))
    assert not closing.rollout.open and closing.rollout.commands == ()
    assert [a.applied for a in closing.answers] == [False] and "ended (promoted)" in closing.answers[0].text


def test_a_restore_that_keeps_failing_answers_rollback_and_pause_with_the_way_out() -> None:
    back = rolled_back_while_routing()
    failing = after_write(back.rollout, WriteResult("retry", message="503"), at(63)).rollout
    for action in ("rollback", "pause"):
        asked = Command(action, "U3", id=5)  # type: ignore[arg-type]
        answered = decide(replace(failing, commands=(asked,)), live(HALF, generation=8), at(90))
        (answer,) = answered.answers
        assert not answer.applied and "gcloud run services update-traffic" in answer.text
        assert answered.write is not None, "and the rollback is made again meanwhile"


def test_resuming_a_promotion_that_timed_out_makes_the_promotion_write() -> None:
    promoted = decide(at_stage(2, next_check_at=at(60)), live({CANDIDATE: 100}), at(60), PASS)
    rollout = promoted.rollout
    for seconds in (61, 200):
        rollout = after_write(rollout, WriteResult("retry", message="deadline exceeded"), at(seconds)).rollout
    assert rollout.state is State.PAUSED and rollout.paused_from is State.PROMOTED
    resumed = decide(replace(rollout, commands=(Command("resume", "U2", id=4),)), live({CANDIDATE: 100}), at(300))
    assert resumed.rollout.state is State.PROMOTED
    assert resumed.write is not None and not resumed.write.tagged, "the canary tag is taken away for real"


def test_a_restore_of_a_finished_deploy_is_a_rollout_the_reconciler_owns() -> None:
    row = restore(service="svc", target=STABLE, serving=CANDIDATE, why="it served before the last deploy",
                  user="U9", plan=PLAN, live=live({CANDIDATE: 100}, tagged=False, generation=20), now=T0)
    assert row.open and row.restoring and row.pending is not None
    assert row.pending.traffic == make_split(ALL_STABLE)
    made = decide(row, live({CANDIDATE: 100}, tagged=False, generation=20), T0)
    assert made.write == row.pending
    rolled = decide(made.rollout, live(ALL_STABLE, tagged=False, generation=21), at(5))
    assert not rolled.rollout.open and rolled.rollout.state is State.ROLLED_BACK
    failed_checks = decide(at_stage(0), live(FIVE), at(5), FAIL)
    assert failed_checks.rollout.restoring
