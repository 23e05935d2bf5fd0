"""An incident's life, sweep by sweep: when it opens, what the thread hears, when it resolves or reopens."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.domain.incidents import (
    AlertPolicy,
    Cycle,
    Failure,
    Incident,
    Step,
    acknowledge,
    monitoring,
    observe,
    tick,
)

T0 = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
POLICY = AlertPolicy(open_after=3, resolve_after=2, cooldown_s=900, escalate_after_s=600,
                     escalation=("S07SREONCAL", "U07LEAD0001"))
SVC = "prediction-worker"
MODEL = Failure("gcs_model_file", "model file not found")
BQ = Failure("bigquery", "403 Access Denied")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def sweeps(incident: Incident | None, *rounds: tuple[Failure, ...], start: float = 0, **kwargs: bool) -> list[Step]:
    """One sweep a minute; each round is what failed in it."""
    steps = []
    for n, failures in enumerate(rounds):
        step = observe(incident, SVC, failures, at(start + n), POLICY, **kwargs)
        steps.append(step)
        incident = step.incident
    return steps


def test_one_failed_sweep_is_noise_and_leaves_nothing_behind() -> None:
    steps = sweeps(None, (MODEL,), ())
    assert [s.parent for s in steps] == [False, False] and all(not s.replies for s in steps)
    assert steps[-1].incident is None


def test_an_incident_opens_after_open_after_failures_with_one_parent_and_no_replies() -> None:
    steps = sweeps(None, (MODEL,), (MODEL,), (MODEL,), (MODEL,), (MODEL,))
    assert [s.parent for s in steps] == [False, False, True, False, False], "drawn once, then quiet"
    opened = steps[2].incident
    assert opened is not None and opened.is_open and opened.announced
    assert opened.detected_at == at(0) and opened.opened_at == at(2), "detected at the first failure"
    assert all(not s.replies for s in steps)


def test_the_thread_hears_only_changes_and_the_incident_resolves_after_resolve_after_passes() -> None:
    opened = sweeps(None, (MODEL,), (MODEL,), (MODEL,))[-1].incident
    steps = sweeps(opened, (MODEL, BQ), (MODEL, BQ), (MODEL, BQ), (BQ,), (), (), start=3)
    assert [s.replies for s in steps[:2]] == [(), ()], "a second check counts its own failures first"
    assert steps[2].replies == ("`bigquery` fails too: 403 Access Denied",) and steps[2].parent
    assert steps[3].replies == ("`gcs_model_file` recovered",)
    assert steps[4].replies == ("`bigquery` recovered",)
    (resolution,) = steps[5].replies
    assert resolution.startswith("resolved: every check passes again, 8 min after it was first detected")
    resolved = steps[5].incident
    assert resolved is not None and resolved.state == "resolved" and resolved.resolved_at == at(8)


def test_a_flap_within_the_cooldown_reopens_the_same_thread_and_later_starts_a_new_one() -> None:
    resolved = sweeps(None, (MODEL,), (MODEL,), (MODEL,), (), ())[-1].incident
    assert resolved is not None and resolved.state == "resolved"
    stored = replace(resolved, id=7)
    flap = sweeps(stored, (MODEL,), (MODEL,), (MODEL,), start=10)
    reopened = flap[-1].incident
    assert reopened is not None and reopened.id == 7 and reopened.is_open and reopened.reopened == 1
    assert flap[-1].replies[0].startswith("failing again (`gcs_model_file`)")
    much_later = sweeps(stored, (MODEL,), (MODEL,), (MODEL,), start=60)[-1].incident
    assert much_later is not None and much_later.id == 0, "past the cooldown, a new incident and a new thread"


def test_a_flap_that_never_reaches_open_after_goes_back_to_resolved() -> None:
    resolved = replace(sweeps(None, (MODEL,), (MODEL,), (MODEL,), (), ())[-1].incident or Incident(SVC), id=7)
    blip = sweeps(resolved, (MODEL,), (), start=10)[-1].incident
    assert blip is not None and blip.state == "resolved" and blip.resolved_at == resolved.resolved_at


def test_acknowledging_records_who_and_stops_escalation() -> None:
    opened = sweeps(None, (MODEL,), (MODEL,), (MODEL,))[-1].incident
    assert opened is not None
    first = tick(opened, at(2 + 10), POLICY)
    assert first.replies and "<!subteam^S07SREONCAL>" in first.replies[0] and first.incident is not None
    assert tick(first.incident, at(2 + 15), POLICY).replies == (), "the next group only after another 10 min"
    second = tick(first.incident, at(2 + 20), POLICY)
    assert second.replies and "<@U07LEAD0001>" in second.replies[0] and second.incident is not None
    assert tick(second.incident, at(2 + 60), POLICY).replies == (), "nobody left to escalate to"
    acked = acknowledge(opened, "U07ONCALL01", at(5))
    assert acked.replies == ("acknowledged by <@U07ONCALL01> after 3 min",) and acked.parent
    assert acked.incident is not None and acked.incident.acknowledged_at == at(5)
    assert tick(acked.incident, at(60), POLICY).replies == ()
    assert acknowledge(acked.incident, "U07LEAD0001", at(6)).replies == (), "the first acknowledgement stands"


def test_a_silence_holds_the_announcement_until_it_ends() -> None:
    steps = sweeps(None, (MODEL,), (MODEL,), (MODEL,), (MODEL,), silenced=True)
    assert not any(s.parent or s.replies for s in steps)
    held = steps[-1].incident
    assert held is not None and held.is_open and not held.announced
    assert tick(held, at(5), POLICY, silenced=True).parent is False
    told = tick(held, at(30), POLICY)
    assert told.parent and told.replies == ("the silence ended and this is still failing",)


def test_cloud_monitoring_opens_at_once_is_deduplicated_and_closes() -> None:
    alert = Failure("monitoring: p99 latency > 800 ms", "p99 was 1.2 s for 5 min", "monitoring", "0.abc")
    opened = monitoring(None, SVC, alert, False, at(0), POLICY)
    assert opened.parent and opened.incident is not None and opened.incident.is_open
    again = monitoring(opened.incident, SVC, alert, False, at(1), POLICY)
    assert again.incident == opened.incident and not again.parent and not again.replies
    swept = observe(opened.incident, SVC, (), at(2), POLICY)
    assert swept.incident is not None and swept.incident.is_open, "sweeps passing do not close Monitoring's check"
    closed = monitoring(swept.incident, SVC, alert, True, at(3), POLICY)
    assert closed.incident is not None and closed.incident.state == "resolved"
    assert closed.replies[-1].startswith("resolved")
    assert monitoring(closed.incident, SVC, alert, True, at(4), POLICY).replies == (), "a repeated close is nothing"


def test_each_open_resolve_cycle_of_a_flap_is_its_own_record() -> None:
    first = sweeps(None, (MODEL,), (MODEL,), (MODEL,), (), ())
    closed = [s.cycle for s in first if s.cycle is not None]
    assert closed == [Cycle(SVC, 0, at(0), None, at(4))], "one cycle, closed when it resolved"
    stored = replace(first[-1].incident or Incident(SVC), id=7)
    flap = sweeps(stored, (MODEL,), (MODEL,), (MODEL,), start=10)
    reopened = flap[-1].incident
    assert reopened is not None
    acked = acknowledge(reopened, "U07ONCALL01", at(13)).incident
    second = sweeps(acked, (), (), start=14)
    assert [s.cycle for s in second if s.cycle is not None] == [Cycle(SVC, 1, at(10), at(13), at(15))], \
        "the flap is a second cycle, from its own detection, not written over the first"
    assert all(s.cycle is None for s in flap), "reopening closes nothing"


def test_an_incident_that_resolves_during_a_silence_is_redrawn_but_the_thread_stays_quiet() -> None:
    opened = sweeps(None, (MODEL,), (MODEL,), (MODEL,))[-1].incident
    assert opened is not None and opened.announced
    steps = sweeps(opened, (), (), start=3, silenced=True)
    resolved = steps[-1].incident
    assert resolved is not None and resolved.state == "resolved"
    assert steps[-1].parent, "the parent turns green, or it stays red for good"
    assert all(not s.replies for s in steps), "a silence holds the thread's replies"
    assert steps[-1].cycle is not None and steps[-1].cycle.resolved_at == at(4)


def test_a_flap_during_a_silence_turns_the_drawn_parent_red_again_quietly() -> None:
    resolved = replace(sweeps(None, (MODEL,), (MODEL,), (MODEL,), (), ())[-1].incident or Incident(SVC), id=7)
    steps = sweeps(resolved, (MODEL,), (MODEL,), (MODEL,), start=10, silenced=True)
    assert steps[-1].incident is not None and steps[-1].incident.is_open
    assert steps[-1].parent and not steps[-1].replies


def test_an_incident_opened_and_resolved_within_a_silence_says_nothing_and_still_counts() -> None:
    steps = sweeps(None, (MODEL,), (MODEL,), (MODEL,), (), (), silenced=True)
    assert not any(s.parent or s.replies for s in steps)
    assert steps[-1].cycle == Cycle(SVC, 0, at(0), None, at(4))
