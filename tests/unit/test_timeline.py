"""An incident's timeline from plain records: each moment classed and in time order, deploys and rollbacks of the
service from an hour before detection, the durations; and its Markdown, each line with its UTC time and link."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.domain.digest import ClosedIncident
from bot.domain.incidents import Incident
from bot.domain.timeline import Change, Said, build, check_spans
from bot.domain.week import week_of
from bot.render.timeline import timeline_markdown

T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
C = "C07PREDICT1"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


INCIDENT = Incident("prediction-worker", id=7, state="resolved", detected_at=at(0), opened_at=at(1),
                    acknowledged_by="U07ONCALL01", acknowledged_at=at(4), resolved_at=at(12), announced=True)
SAID = [
    Said(at(1), "prediction-worker: open incident #7 (gcs_model_file)", C, "100.000001", first=True),
    Said(at(3), "`monitoring: 5xx ratio` fails too: error ratio above 5%", C, "100.000002"),
    Said(at(4), "acknowledged by <@U07ONCALL01> after 3 min", C, "100.000003"),
    Said(at(6), "escalating to <!subteam^S07SREONCAL>: unacknowledged for 5 min.", C, "100.000004"),
    Said(at(10), "`gcs_model_file` recovered", C, "100.000005"),
    Said(at(12), "resolved: every check passes again, 12 min after it was first detected", C, "100.000006"),
]
CHANGES = [
    Change(1, at(-90), "deploy of `pw-00040`", "promoted", at(-80), False, "C07DEPLOYS1", "90.1"),
    Change(2, at(-20), "deploy of `pw-00041`", "rolled_back", at(8), False, "C07DEPLOYS1", "90.2"),
    Change(3, at(9), "rollback to `pw-00040`", "promoted", at(9.5), True, "C07DEPLOYS1", "90.3"),
    Change(4, at(30), "deploy of `pw-00042`", "promoted", at(40), False, "C07DEPLOYS1", "90.4"),
]


def test_each_moment_is_classed_and_in_time_order_with_deploys_from_an_hour_before() -> None:
    timeline = build(INCIDENT, SAID, CHANGES, at(60))
    assert [(e.at, e.kind) for e in timeline.entries] == [
        (at(-20), "deploy"), (at(0), "detected"), (at(1), "opened"), (at(3), "alert"), (at(4), "acknowledged"),
        (at(6), "escalated"), (at(8), "rollback"), (at(9), "rollback"), (at(10), "recovery"), (at(12), "resolved")]
    assert timeline.entries[1].ts == "100.000001", "detection links to the incident's parent message"
    assert timeline.time_to_acknowledge == timedelta(minutes=4)
    assert timeline.time_to_resolve == timedelta(minutes=12)


def test_an_open_incident_has_no_time_to_resolve_and_lists_deploys_until_now() -> None:
    open_one = Incident("prediction-worker", id=8, state="open", detected_at=at(0), opened_at=at(1), announced=True)
    timeline = build(open_one, SAID[:2], CHANGES, at(35))
    assert timeline.time_to_resolve is None and timeline.time_to_acknowledge is None
    assert [e.kind for e in timeline.entries][-1] == "deploy", "rollout #4 started before now"
    assert "Time to resolve: not resolved yet" in timeline_markdown(timeline, {})


def test_the_markdown_has_a_utc_time_and_a_link_per_line_and_plain_mentions() -> None:
    timeline = build(INCIDENT, SAID, CHANGES, at(60))
    links = {(C, s.ts): f"https://nba-props.slack.com/archives/{C}/p{s.ts.replace('.', '')}" for s in SAID}
    draft = timeline_markdown(timeline, links)
    assert draft.startswith("# Incident #7: prediction-worker (postmortem draft)\n")
    assert "- Time to acknowledge: 4 min 0 s by @U07ONCALL01" in draft
    assert "- Time to resolve: 12 min 0 s" in draft
    assert ("- `2026-12-06 03:04:00 UTC` **acknowledged**: acknowledged by @U07ONCALL01 after 3 min "
            f"([message](https://nba-props.slack.com/archives/{C}/p100000003))") in draft
    assert "escalating to @S07SREONCAL" in draft
    assert "- `2026-12-06 02:40:00 UTC` **deploy**: rollout #2: deploy of `pw-00041`\n" in draft, \
        "no link where Slack gave none"


def test_check_spans_start_at_a_failing_line_or_at_detection_and_end_at_recovery_or_resolution() -> None:
    said = [*SAID, Said(at(5), "`firestore` fails too: timeout", C, "100.000009")]
    spans = check_spans(build(INCIDENT, said, (), at(60)), at(60))
    assert [(s.check, s.start, s.end) for s in spans] == [
        ("gcs_model_file", at(0), at(10)),  # named by the parent only: failing since detection
        ("monitoring: 5xx ratio", at(3), at(12)),  # never said to recover: until the resolution
        ("firestore", at(5), at(12))]


def test_the_week_counts_each_day_s_deploys_failures_and_recoveries() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    closed = [ClosedIncident("pw", now - timedelta(days=1, minutes=30), None, now - timedelta(days=1)),
              ClosedIncident("pw", now - timedelta(hours=2), now - timedelta(hours=1, minutes=50),
                             now - timedelta(hours=1, minutes=15))]
    days = week_of([], closed, now)
    assert [d.day.isoformat() for d in days] == [f"2026-12-0{n}" for n in range(1, 8)]
    assert [d.recoveries_min for d in days][-2:] == [(30.0,), (45.0,)]
    assert all(d.deploys == d.failed == 0 for d in days)
