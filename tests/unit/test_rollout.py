"""The canary state machine, step by step: what it writes to Cloud Run, and when it stops."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.analysis import Finding, Thresholds, Verdict
from bot.domain.rollout import (
    TAG,
    Answer,
    Command,
    Insufficient,
    Live,
    Plan,
    Rollout,
    State,
    Write,
    WriteResult,
    after_write,
    decide,
    make_split,
)

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
STABLE, CANDIDATE = "svc-00002-abc", "svc-v3-r1"
PLAN = Plan(stages=(5, 50, 100), window_s=60, progress_deadline_s=600, interval_s=5,
            thresholds=Thresholds(min_requests=20, min_success_rate=99, max_p99_ms=500, max_error_logs=0))
PASS = Verdict("pass", (Finding("success rate", "pass", "100% of 400 requests"),))
FAIL = Verdict("fail", (Finding("success rate", "fail", "81.0% of 300 requests (< 99%)"),))
PENDING = Verdict("pending", ())
INCONCLUSIVE = Verdict("inconclusive", (Finding("error logs", "unavailable", "Cloud Logging could not be read"),))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rollout(**changes: object) -> Rollout:
    base = Rollout(id=1, service="svc", image="repo/svc:v3", stable=STABLE, candidate=CANDIDATE, plan=PLAN,
                   requested_by="U1", created_at=T0, next_check_at=T0, traffic=make_split({STABLE: 100}))
    return replace(base, **changes)  # type: ignore[arg-type]


def live(shares: dict[str, int], *, candidate: str = "ready", tagged: bool = True, generation: int = 7,
         message: str = "", exists: bool = True, asked: dict[str, int] | None = None, reconciling: bool = False,
         failure: str = "", latest: str = "") -> Live:
    return Live(exists=exists, traffic=make_split(shares), tags={TAG: CANDIDATE} if tagged else {},
                candidate=candidate, candidate_message=message,  # type: ignore[arg-type]
                requested=None if asked is None else make_split(asked), generation=generation,
                reconciling=reconciling, failure=failure, latest_created=latest)


def at_stage(index: int, started: float = 0, **changes: object) -> Rollout:
    percent = PLAN.stages[index]
    fields: dict[str, object] = {"state": State.ANALYSING, "stage": index, "stage_started_at": at(started),
                                 "next_check_at": at(started + PLAN.interval_s), "generation": 7,
                                 "progress_at": at(started),
                                 "traffic": make_split({STABLE: 100 - percent, CANDIDATE: percent})}
    return rollout(**{**fields, **changes})


def test_a_deploy_creates_the_candidate_once_at_zero_percent() -> None:
    decision = decide(rollout(), live({STABLE: 100}, candidate="missing", tagged=False), T0)
    assert decision.write == Write("create_candidate", make_split({STABLE: 100}), True)
    assert decision.rollout.pending == decision.write, "the write is recorded before it is made"
    again = decide(decision.rollout, live({STABLE: 100}, candidate="missing", tagged=False), at(1))
    assert again.write == decision.write, "a write lost in a crash is made again"
    settled = decide(decision.rollout, live({STABLE: 100}, candidate="pending", generation=8), at(2))
    assert settled.write is None and settled.rollout.pending is None and settled.rollout.generation == 8


def test_a_ready_candidate_is_probed_before_it_gets_traffic() -> None:
    ready = decide(rollout(), live({STABLE: 100}), at(10))
    assert ready.rollout.state is State.VERIFYING and ready.write is None
    assert decide(ready.rollout, live({STABLE: 100}), at(10)).analyse
    first = decide(ready.rollout, live({STABLE: 100}), at(10), PASS)
    assert first.write == Write("set_traffic", make_split({STABLE: 95, CANDIDATE: 5}), True)
    assert (first.rollout.state, first.rollout.stage, first.rollout.stage_started_at) == (State.ANALYSING, 0, at(10))


def test_a_candidate_failing_its_checks_never_gets_traffic() -> None:
    verifying = rollout(state=State.VERIFYING, generation=7, progress_at=at(0))
    decision = decide(verifying, live({STABLE: 100}), at(10), FAIL)
    assert decision.rollout.state is State.ROLLED_BACK
    assert decision.write == Write("set_traffic", make_split({STABLE: 100}), False)
    assert "before getting any traffic" in decision.rollout.reason


def test_a_candidate_that_never_becomes_ready_fails_with_cloud_runs_message() -> None:
    waiting = decide(rollout(), live({STABLE: 100}, candidate="pending", message="Waiting for health check"), at(599))
    assert waiting.rollout.state is State.DEPLOYING and waiting.write is None
    late = decide(rollout(), live({STABLE: 100}, candidate="pending", message="Waiting for health check"), at(600))
    assert late.rollout.state is State.FAILED
    assert late.rollout.reason == f"{CANDIDATE} was not ready within 10 min: Waiting for health check"
    assert late.write is not None and not late.write.tagged, "the tag of the dead candidate is removed"
    crashed = decide(rollout(), live({STABLE: 100}, candidate="failed", message="container exited 1"), at(30))
    assert crashed.rollout.state is State.FAILED and "container exited 1" in crashed.rollout.reason


def test_a_failure_mid_window_rolls_back_at_once_in_one_write() -> None:
    decision = decide(at_stage(0), live({STABLE: 95, CANDIDATE: 5}), at(5), FAIL)
    assert decision.rollout.state is State.ROLLED_BACK
    assert decision.write == Write("set_traffic", make_split({STABLE: 100}), False)
    assert decision.rollout.reason.startswith("stage 5% failed: success rate: 81.0% of 300 requests")
    assert decision.rollout.results[-1].outcome == "fail"
    assert [n.kind for n in decision.notes] == ["rolled_back"]


def test_a_window_that_is_not_over_waits_no_longer_than_its_end() -> None:
    stage = replace(at_stage(0), next_check_at=at(58))
    decision = decide(stage, live({STABLE: 95, CANDIDATE: 5}), at(58), PENDING)
    assert decision.write is None and decision.rollout.next_check_at == at(60)
    assert decide(stage, live({STABLE: 95, CANDIDATE: 5}), at(57)).analyse is False


def test_passing_stages_walk_to_100_and_promotion_removes_the_tag() -> None:
    second = decide(at_stage(0), live({STABLE: 95, CANDIDATE: 5}), at(60), PASS)
    assert second.write is not None and second.write.traffic == make_split({STABLE: 50, CANDIDATE: 50})
    last = decide(at_stage(2), live({CANDIDATE: 100}), at(60), PASS)
    assert last.rollout.state is State.PROMOTED
    assert last.write == Write("set_traffic", make_split({CANDIDATE: 100}), False)
    assert [r.percent for r in last.rollout.results] == [100]


def test_no_evidence_three_times_pauses_in_the_open() -> None:
    first = decide(at_stage(1), live({STABLE: 50, CANDIDATE: 50}), at(60), INCONCLUSIVE)
    assert first.rollout.state is State.ANALYSING and first.rollout.inconclusive == 1
    assert first.rollout.stage_started_at == at(60), "another window starts"
    paused = decide(replace(first.rollout, inconclusive=2, next_check_at=at(120)), live({STABLE: 50, CANDIDATE: 50}),
                    at(120), INCONCLUSIVE)
    assert paused.rollout.state is State.PAUSED and paused.write is None
    assert "no evidence of health after 3 windows" in paused.rollout.reason


def test_traffic_changed_by_hand_pauses_and_says_what_changed() -> None:
    decision = decide(at_stage(1), live({STABLE: 100}, generation=9), at(10))
    assert decision.rollout.state is State.PAUSED and decision.write is None
    assert decision.rollout.reason == (f"traffic was changed outside chatops: it is now set to {STABLE} 100%, "
                                       f"the rollout had set {STABLE} 50%, {CANDIDATE} 50%")
    deployed = decide(at_stage(1), live({STABLE: 50, CANDIDATE: 50}, generation=9, latest="svc-00009-gcl"), at(10))
    assert deployed.rollout.state is State.PAUSED
    assert deployed.rollout.reason == "revision svc-00009-gcl was deployed outside chatops"


def test_a_new_generation_that_leaves_traffic_and_revisions_alone_is_not_a_persons_change() -> None:
    """Cloud Run's etag also moves with status; a label change moves the generation: neither is chatops' business."""
    labelled = decide(at_stage(1), live({STABLE: 50, CANDIDATE: 50}, generation=9, latest=CANDIDATE), at(10), PENDING)
    assert labelled.rollout.state is State.ANALYSING and labelled.rollout.generation == 9


def test_after_a_crash_a_write_that_landed_is_adopted_and_a_foreign_change_pauses() -> None:
    write = Write("set_traffic", make_split({STABLE: 50, CANDIDATE: 50}), True)
    crashed = at_stage(1, pending=write)
    landed = decide(crashed, live({STABLE: 50, CANDIDATE: 50}, generation=8), at(1))
    assert landed.rollout.pending is None and landed.rollout.generation == 8 and landed.write is None
    lost = decide(crashed, live({STABLE: 95, CANDIDATE: 5}), at(1))
    assert lost.write == write
    routing = decide(crashed, live({STABLE: 95, CANDIDATE: 5}, asked={STABLE: 50, CANDIDATE: 50}, generation=8,
                                   reconciling=True), at(1))
    assert routing.write is None and routing.rollout.pending == replace(write, generation=8), \
        "Cloud Run has it: wait for it to route, do not send it twice"
    foreign = decide(crashed, live({STABLE: 80, CANDIDATE: 20}, generation=9), at(1))
    assert foreign.rollout.state is State.PAUSED and foreign.write is None


def test_a_write_is_done_when_cloud_run_routes_it_not_when_it_is_asked_for() -> None:
    write = Write("set_traffic", make_split({STABLE: 50, CANDIDATE: 50}), True)
    started = after_write(at_stage(1, pending=write), WriteResult("started", generation=8), at(1))
    assert started.rollout.pending == replace(write, generation=8) and started.rollout.generation == 8
    asked = live({STABLE: 95, CANDIDATE: 5}, asked={STABLE: 50, CANDIDATE: 50}, generation=8, reconciling=True)
    assert decide(started.rollout, asked, at(2)).rollout.pending is not None
    routed = decide(started.rollout, live({STABLE: 50, CANDIDATE: 50}, generation=8), at(3), PENDING)
    assert routed.rollout.pending is None and routed.rollout.traffic == make_split({STABLE: 50, CANDIDATE: 50})


def test_a_traffic_change_cloud_run_fails_to_apply_ends_the_rollout_and_restores_the_stable() -> None:
    """A target naming a revision that is gone: accepted, then the operation fails and nothing is routed."""
    write = Write("set_traffic", make_split({STABLE: 50, CANDIDATE: 50}), True,
                  generation=8)
    failed = decide(at_stage(1, pending=write), live({STABLE: 95, CANDIDATE: 5}, asked={STABLE: 50, CANDIDATE: 50},
                                                    generation=8, failure=f"Revision '{CANDIDATE}' not found."),
                    at(2))
    assert failed.rollout.state is State.FAILED
    assert f"Cloud Run could not apply the traffic change to {STABLE} 50%, {CANDIDATE} 50%" in failed.rollout.reason
    assert failed.write is not None and failed.write.traffic == make_split({STABLE: 100}) and failed.notes


def test_a_missing_act_as_ends_the_deploy_naming_the_role_and_leaves_traffic_alone() -> None:
    create = decide(rollout(), live({STABLE: 100}, candidate="missing", tagged=False), T0)
    refused = after_write(create.rollout, WriteResult(
        "refused", status="PERMISSION_DENIED", permission="iam.serviceAccounts.actAs",
        message="Permission 'iam.serviceaccounts.actAs' denied on service account 1234-compute@developer."
                "gserviceaccount.com (or it may not exist)."), at(1))
    assert refused.rollout.state is State.FAILED and refused.write is None and refused.rollout.pending is None
    assert "roles/iam.serviceAccountUser" in refused.rollout.reason and "PERMISSION_DENIED" in refused.rollout.reason
    (note,) = refused.notes
    assert note.step == "deploy-refused" and f"Traffic is as it was: {STABLE} 100%" in note.text


def test_a_refused_stage_move_restores_the_stable_and_a_refused_restore_says_how_to_do_it_by_hand() -> None:
    stage = decide(at_stage(0), live({STABLE: 95, CANDIDATE: 5}), at(60), PASS)
    refused = after_write(stage.rollout, WriteResult("refused", status="PERMISSION_DENIED",
                                                     permission="run.services.update", message="denied"), at(61))
    assert refused.rollout.state is State.FAILED and "roles/run.developer" in refused.rollout.reason
    assert refused.write is not None and refused.write.traffic == make_split({STABLE: 100})
    again = after_write(refused.rollout, WriteResult("refused", status="PERMISSION_DENIED", message="denied"), at(62))
    assert again.rollout.pending is None and again.write is None
    assert f"gcloud run services update-traffic svc --to-revisions {STABLE}=100" in again.notes[0].text


def test_an_unanswered_stage_move_is_retried_until_the_deadline_then_pauses_in_the_open() -> None:
    stage = decide(at_stage(0), live({STABLE: 95, CANDIDATE: 5}), at(60), PASS)
    first = after_write(stage.rollout, WriteResult("retry", message="503 Service Unavailable"), at(60))
    assert first.rollout.pending is not None and first.rollout.pending.tries == 1 and first.notes[0].kind == "retrying"
    again = decide(first.rollout, live({STABLE: 95, CANDIDATE: 5}), first.rollout.next_check_at)
    assert again.write == first.rollout.pending, "not made: made again"
    late = after_write(first.rollout, WriteResult("retry", message="503 Service Unavailable"), at(60 + 121))
    assert late.rollout.state is State.PAUSED and late.write is None
    assert "did not take the traffic change" in late.rollout.reason
    never = decide(late.rollout, live({STABLE: 95, CANDIDATE: 5}), at(200))
    assert never.rollout.pending is None and never.write is None, "paused: a move that never landed stays not made"
    landed = decide(late.rollout, live({STABLE: 50, CANDIDATE: 50}, generation=8), at(200))
    assert landed.rollout.state is State.PAUSED and landed.rollout.traffic == make_split({STABLE: 50, CANDIDATE: 50}), \
        "one that timed out but landed is adopted, not taken for a person's"


def test_an_unanswered_promotion_is_made_again_though_its_split_is_already_routed() -> None:
    """The last stage routes 100% already; the promotion only takes the tag away, so a refused one is not done."""
    last = decide(at_stage(2), live({CANDIDATE: 100}), at(60), PASS)
    refused = after_write(last.rollout, WriteResult("retry", message="503 Service Unavailable"), at(60))
    again = decide(refused.rollout, live({CANDIDATE: 100}), refused.rollout.next_check_at)
    assert again.write == refused.rollout.pending and again.rollout.state is State.PROMOTED
    done = decide(refused.rollout, live({CANDIDATE: 100}, tagged=False), refused.rollout.next_check_at)
    assert done.write is None and done.rollout.pending is None


def test_an_unanswered_rollback_is_never_given_up() -> None:
    back = decide(at_stage(0), live({STABLE: 95, CANDIDATE: 5}), at(5), FAIL)
    waiting = back.rollout
    for minute in range(1, 30):
        waiting = after_write(waiting, WriteResult("retry", message="503"), at(5 + 60 * minute)).rollout
    assert waiting.state is State.ROLLED_BACK and waiting.pending is not None and waiting.pending.tries == 29


def test_rollback_and_pause_come_before_a_pending_write() -> None:
    stuck = Write("set_traffic", make_split({STABLE: 50, CANDIDATE: 50}), True,
                  tries=3, first_tried_at=at(60))
    waiting = at_stage(0, pending=stuck, commands=(Command("rollback", "U2"),))
    decision = decide(waiting, live({STABLE: 95, CANDIDATE: 5}), at(70))
    assert decision.rollout.state is State.ROLLED_BACK
    assert decision.write is not None and decision.write.traffic == make_split({STABLE: 100})
    paused = decide(replace(waiting, commands=(Command("pause", "U2"),)), live({STABLE: 95, CANDIDATE: 5}), at(70))
    assert paused.rollout.state is State.PAUSED and paused.write is None
    assert paused.rollout.pending == stuck, "a write already made may still land: it is settled, not forgotten"
    never = decide(paused.rollout, live({STABLE: 95, CANDIDATE: 5}), at(80))
    assert never.write is None and never.rollout.pending is None, "paused: a move that never landed is not made"
    landed = decide(paused.rollout, live({STABLE: 50, CANDIDATE: 50}, generation=8), at(80))
    assert landed.rollout.state is State.PAUSED and landed.rollout.traffic == make_split({STABLE: 50, CANDIDATE: 50})
    assert not [n for n in landed.notes if "outside chatops" in n.text], "chatops' own write is not a person's"


def test_the_progress_deadline_holds_while_analysing() -> None:
    starved = decide(at_stage(1, next_check_at=at(599), last_verdict="error logs: Cloud Logging could not be read"),
                     live({STABLE: 50, CANDIDATE: 50}), at(600))
    assert starved.rollout.state is State.ROLLED_BACK
    assert starved.rollout.reason.startswith("no progress for 10 min in analysing")
    assert starved.write is not None and starved.write.traffic == make_split({STABLE: 100})


SHORT = replace(PASS, insufficient="only 3 requests (< 20) in request logs: success rate and p99 not judged")


def test_too_little_traffic_extends_the_window_then_judges_on_probes_and_logs_when_told_to() -> None:
    plan = replace(PLAN, insufficient=Insufficient(extend=2, then="judge"))
    first = decide(at_stage(0, plan=plan, next_check_at=at(60)), live({STABLE: 95, CANDIDATE: 5}), at(60), SHORT)
    assert first.rollout.extensions == 1 and first.write is None and first.notes[0].kind == "extended"
    assert first.rollout.window_end == at(120)
    judged = decide(replace(first.rollout, extensions=2, next_check_at=at(180)), live({STABLE: 95, CANDIDATE: 5}),
                    at(180), SHORT)
    assert judged.write is not None and judged.rollout.stage == 1
    assert "judged on probes and logs alone (only 3 requests" in judged.notes[0].text


def test_too_little_traffic_pauses_for_a_person_after_the_extended_windows_by_default() -> None:
    assert PLAN.insufficient == Insufficient(extend=2, then="pause")
    paused = decide(at_stage(0, extensions=2, next_check_at=at(180)), live({STABLE: 95, CANDIDATE: 5}), at(180),
                    SHORT)
    assert paused.write is None and paused.rollout.state is State.PAUSED
    assert "too little traffic to judge stage 5% after 2 extended windows" in paused.rollout.reason


@pytest.mark.parametrize(("command", "state", "traffic"), [
    (Command("promote", "U2"), State.ANALYSING, {STABLE: 50, CANDIDATE: 50}),
    (Command("promote_full", "U2"), State.PROMOTED, {CANDIDATE: 100}),
    (Command("rollback", "U2"), State.ROLLED_BACK, {STABLE: 100}),
    (Command("rollback", "U2", to="svc-00001-old"), State.ROLLED_BACK, {"svc-00001-old": 100}),
])
def test_commands_move_traffic_in_one_write(command: Command, state: State, traffic: dict[str, int]) -> None:
    decision = decide(at_stage(0, commands=(command,)), live({STABLE: 95, CANDIDATE: 5}), at(10))
    assert decision.rollout.state is state and decision.rollout.commands == ()
    assert decision.answers == (Answer(command, True),)
    assert decision.write is not None and decision.write.traffic == make_split(traffic)


def test_pause_keeps_traffic_and_resume_starts_the_stage_window_again() -> None:
    paused = decide(at_stage(0, commands=(Command("pause", "U2"),)), live({STABLE: 95, CANDIDATE: 5}), at(10))
    assert paused.rollout.state is State.PAUSED and paused.write is None
    assert "by <@U2>" in paused.notes[0].text
    idle = decide(paused.rollout, live({STABLE: 95, CANDIDATE: 5}), at(500))
    assert idle.rollout.state is State.PAUSED and idle.write is None, "a paused rollout does nothing by itself"
    resumed = decide(replace(paused.rollout, commands=(Command("resume", "U3"),)), live({STABLE: 95, CANDIDATE: 5}),
                     at(600))
    assert (resumed.rollout.state, resumed.rollout.stage, resumed.rollout.stage_started_at) == (
        State.ANALYSING, 0, at(600))


def test_a_new_service_is_deployed_directly() -> None:
    new = rollout(stable="", traffic=())
    create = decide(new, live({}, candidate="missing", tagged=False, exists=False), T0)
    assert create.write is not None and create.write.kind == "create_service"
    probe = decide(replace(new, pending=None), live({CANDIDATE: 100}, tagged=False), at(5))
    assert probe.analyse
    done = decide(replace(new, pending=None), live({CANDIDATE: 100}, tagged=False), at(5), PASS)
    assert done.rollout.state is State.PROMOTED and done.write is None
    refused = decide(replace(new, commands=(Command("rollback", "U1"),)), live({CANDIDATE: 100}), at(5))
    assert refused.write is None and refused.notes[0].kind == "refused" and not refused.answers[0].applied


def test_an_ended_rollout_does_nothing() -> None:
    ended = rollout(state=State.PROMOTED, ended_at=T0)
    assert decide(ended, live({STABLE: 100}), at(5)).write is None
