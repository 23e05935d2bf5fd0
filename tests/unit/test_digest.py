"""The health digest: its figures (MTTR, change failure rate, deploy frequency), its order (worst first), the late
flag, and a message Slack accepts for an empty fleet, a quiet period and a thousand services.

Slack's limits are checked with the sandbox's own rules (sandbox/slack_workspace.py: 50 blocks, 3,000 characters a
section, 150 a header, https://docs.slack.dev/reference/block-kit/blocks), plus the digest's own budget for the
undocumented `msg_blocks_too_long` (https://github.com/slackapi/bolt-js/issues/2867).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.analysis import Thresholds
from bot.domain.digest import ClosedIncident, Digest, OpenIncident, digest_of
from bot.domain.health import Check, FleetHealth, ServiceHealth, Status
from bot.domain.incidents import AlertPolicy, Failure, Incident, observe
from bot.domain.rollout import Plan, Rollout, State, make_split
from bot.render.blocks import MAX_BLOCKS
from bot.render.digest import TEXT_BUDGET, mention, render_digest, spoken
from bot.render.health import Rendered
from sandbox.blockkit_text import text_of
from sandbox.slack_workspace import BOT, Workspace

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
PLAN = Plan(stages=(5, 50, 100), window_s=60, progress_deadline_s=600, interval_s=5,
            thresholds=Thresholds(min_requests=20, min_success_rate=99, max_p99_ms=500, max_error_logs=0))
DEPLOYS = "C07DEPLOYS1"


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def link(service: str, check: str | None) -> str:
    return f"https://bot.example/runbooks/{service}?sig={'x' * 43}#{check or ''}"


def healthy(name: str) -> ServiceHealth:
    return ServiceHealth(name, Status.HEALTHY, "1 checks pass", (Check("db", "pass", "readiness"),))


def unhealthy(name: str, failing: int = 1) -> ServiceHealth:
    checks = tuple(Check(f"check_{i}", "fail", "readiness", "timeout after 2000 ms " * 10) for i in range(failing))
    return ServiceHealth(name, Status.UNHEALTHY, "check_0 failing", checks)


def degraded(name: str) -> ServiceHealth:
    return ServiceHealth(name, Status.DEGRADED, "freshness failing", (Check("freshness", "warn", "deep", "6 h old"),))


def unreachable(name: str) -> ServiceHealth:
    return ServiceHealth(name, Status.UNREACHABLE, "no answer", ())


def deploy(service: str, state: State, ended: datetime | None, *, image: str = "repo/app:v2", ident: int = 1,
           reason: str = "") -> Rollout:
    started = (ended or NOW) - minutes(20)
    return Rollout(id=ident, service=service, image=image, stable="r1", candidate="r2", plan=PLAN,
                   requested_by="U07ONCALL01", created_at=started, next_check_at=started,
                   traffic=make_split({"r1": 100}), state=state, ended_at=ended, reason=reason)


def manual_rollback(service: str, at: datetime) -> Rollout:
    """As commands/rollback.py records a `/rollback`."""
    return Rollout(id=99, service=service, image="(rollback to r1)", stable="r1", candidate="r2", plan=PLAN,
                   requested_by="U07LEAD0001", created_at=at, next_check_at=at, traffic=make_split({"r1": 100}),
                   state=State.ROLLED_BACK, ended_at=at, reason="rolled back by <@U07LEAD0001> to r1; was r2 100%")


def digest(services: tuple[ServiceHealth, ...] = (), rollouts: tuple[Rollout, ...] = (),
           incidents: tuple[OpenIncident, ...] = (), closed: tuple[ClosedIncident, ...] = (), *,
           since: datetime = NOW - DAY, now: datetime = NOW, due_at: datetime = NOW) -> Digest:
    return digest_of(FleetHealth(services), rollouts, incidents, closed, since=since, now=now, due_at=due_at)


def closed(detect_to_ack: float | None, detect_to_resolve: float, resolved: datetime = NOW - DAY) -> ClosedIncident:
    detected = resolved - minutes(detect_to_resolve)
    acked = None if detect_to_ack is None else detected + minutes(detect_to_ack)
    return ClosedIncident("svc", detected, acked, resolved)


def accepted_by_slack(message: Rendered) -> None:
    """What the sandbox's chat.postMessage checks, and the digest's own cumulative budget."""
    workspace = Workspace(bot_token=f"xoxb-{secrets.token_hex(12)}", channels={"deploys": DEPLOYS})
    workspace.post(DEPLOYS, BOT.id, message.text, message.blocks)
    assert len(message.blocks) <= MAX_BLOCKS
    assert len(text_of({"text": message.text, "blocks": message.blocks})) <= TEXT_BUDGET


def said(message: Rendered) -> str:
    return text_of({"text": message.text, "blocks": message.blocks})


def left_out(what: str, text: str) -> int:
    """The count a list's closing "…and K more <what>" line gives; 0 when the whole list is shown."""
    found = re.search(rf"…and (\d+) more {what}", text)
    return int(found.group(1)) if found else 0


# --- MTTR ---------------------------------------------------------------------------------------------------


def test_mttr_averages_acknowledgement_and_resolution_over_the_last_seven_days() -> None:
    week = (closed(2, 10), closed(4, 20), closed(None, 60, resolved=NOW - 6 * DAY), closed(1, 500, NOW - 8 * DAY))
    mttr = digest(closed=week).mttr
    assert (mttr.resolved, mttr.acknowledged) == (3, 2)
    assert mttr.mean_to_acknowledge == minutes(3)
    assert mttr.mean_to_resolve == minutes(30)
    assert mttr.within_goal is True  # 30 min against a 30 min goal


def test_mttr_over_the_goal_says_so() -> None:
    found = digest_of(FleetHealth(()), (), (), (closed(5, 45),), since=NOW - DAY, now=NOW, due_at=NOW,
                      mttr_goal=minutes(30))
    assert found.mttr.within_goal is False
    assert ":warning: over the 30 min goal" in said(render_digest(found, link))
    assert "resolved in 45 min on average" in said(render_digest(found, link))


def test_no_incidents_is_no_mttr_rather_than_zero() -> None:
    found = digest()
    assert found.mttr.mean_to_resolve is None and found.mttr.within_goal is None
    assert "*MTTR, last 7 days*: no incidents resolved · goal 30 min" in said(render_digest(found, link))


def test_incidents_nobody_acknowledged_still_count_towards_resolution() -> None:
    mttr = digest(closed=(closed(None, 12),)).mttr
    assert (mttr.acknowledged, mttr.mean_to_acknowledge, mttr.mean_to_resolve) == (0, None, minutes(12))


def test_mttr_counts_every_cycle_of_a_flapping_incident_not_only_its_last() -> None:
    """One incident, one thread: down 40 min, up 5, down again 2 min. Both cycles are times to restore."""
    policy = AlertPolicy(open_after=1, resolve_after=1, cooldown_s=900)
    failing, cycles = (Failure("db", "refused"),), []
    incident: Incident | None = None
    for minute, failures in ((0, failing), (40, ()), (45, failing), (47, ())):
        step = observe(incident, "svc", failures, NOW - DAY + minutes(minute), policy)
        incident = replace(step.incident, id=1) if step.incident is not None else None
        cycles += [step.cycle] if step.cycle is not None else []
    assert incident is not None and incident.reopened == 1, "the flap reopened the same incident"
    mttr = digest(closed=tuple(ClosedIncident(c.service, c.detected_at, c.acknowledged_at, c.resolved_at)
                               for c in cycles)).mttr
    assert (mttr.resolved, mttr.mean_to_resolve) == (2, minutes(21))


def test_open_incidents_are_said_with_mttr_at_their_age() -> None:
    found = digest(incidents=(OpenIncident("stuck", ("db",), NOW - 3 * DAY), OpenIncident("new", ("db",), NOW
                                                                                          - minutes(5))),
                   closed=(closed(2, 10),))
    assert (found.mttr.resolved, found.mttr.still_open, found.mttr.oldest_open) == (1, 2, 3 * DAY)
    assert "resolved in 10 min on average" in said(render_digest(found, link))
    assert "· 2 still open, the oldest for 3 d" in said(render_digest(found, link)), \
        "a quick mean must not hide the incident open for days"


def test_an_incident_resolved_before_it_was_detected_is_refused() -> None:
    with pytest.raises(ValueError, match="before detected"):
        ClosedIncident("svc", NOW, None, NOW - minutes(1))


# --- deploys ------------------------------------------------------------------------------------------------


def test_change_failure_rate_and_frequency_count_deploys_that_ended_in_the_period() -> None:
    rollouts = (
        deploy("a", State.PROMOTED, NOW - minutes(30)),
        deploy("b", State.PROMOTED, NOW - DAY - minutes(30)),
        deploy("c", State.ROLLED_BACK, NOW - DAY - DAY // 2, reason="p99 812 ms > 500 ms"),
        deploy("d", State.FAILED, NOW - minutes(90), reason="PERMISSION_DENIED"),
        deploy("e", State.PROMOTED, NOW - 3 * DAY),  # before the period
        deploy("f", State.ANALYSING, None),  # no outcome yet
    )
    deploys = digest(rollouts=rollouts, since=NOW - 2 * DAY).deploys
    assert deploys.count == 4 and deploys.failed == 2
    assert deploys.change_failure_rate == 0.5
    assert deploys.per_day == 2.0
    assert [c.rollout.service for c in deploys.changes] == ["d", "c", "a", "b"]  # failures first, newest first
    assert [r.service for r in deploys.in_progress] == ["f"]


def test_a_promoted_deploy_undone_by_rollback_is_a_failed_change_and_the_rollback_no_deploy() -> None:
    rollouts = (deploy("api", State.PROMOTED, NOW - minutes(120)), manual_rollback("api", NOW - minutes(60)))
    found = digest(rollouts=rollouts)
    assert found.deploys.count == 1 and found.deploys.change_failure_rate == 1.0
    assert found.deploys.changes[0].undone_by_hand
    assert [r.service for r in found.deploys.rollbacks] == ["api"]
    text = said(render_digest(found, link))
    assert "*api* `app:v2` promoted, then rolled back by hand" in text
    assert ":rewind: *api* (rollback to r1) by <@U07LEAD0001>" in text


def test_no_deploys_is_no_failure_rate_rather_than_zero_percent() -> None:
    deploys = digest().deploys
    assert (deploys.count, deploys.change_failure_rate, deploys.per_day) == (0, None, 0.0)
    assert "*Deploys*: none ended in 1 d" in said(render_digest(digest(), link))


def test_the_deploy_line_reads_outcome_rate_and_frequency() -> None:
    rollouts = (deploy("a", State.PROMOTED, NOW - minutes(30)),
                deploy("c", State.ROLLED_BACK, NOW - minutes(90), reason="p99 812 ms > 500 ms"))
    text = said(render_digest(digest(rollouts=rollouts), link))
    assert "*Deploys*: 2 in 1 d · 2.0 a day · change failure rate 50% (1 of 2 rolled back or failed)" in text
    assert (":leftwards_arrow_with_hook: *c* `app:v2` rolled back 2026-11-25 07:30 UTC · <@U07ONCALL01> — "
            "p99 812 ms &gt; 500 ms") in text


# --- order --------------------------------------------------------------------------------------------------


def test_problems_come_worst_first_and_healthy_services_are_only_counted() -> None:
    services = (healthy("a"), degraded("b"), unhealthy("c", 1), unhealthy("d", 3), unreachable("e"), healthy("f"))
    found = digest(services)
    assert [s.service for s in found.problems] == ["e", "d", "c", "b"]
    message = render_digest(found, link)
    text = said(message)
    assert [text.index(f"*{name}*") for name in "edcb"] == sorted(text.index(f"*{name}*") for name in "edcb")
    assert "*f*" not in text and "*a*" not in text
    assert message.blocks[0]["text"]["text"] == "Health digest · 1 unreachable · 2 unhealthy · 1 degraded · 2 healthy"
    sig = "?sig=" + "x" * 43
    assert (f":red_circle: *d* unhealthy: <https://bot.example/runbooks/d{sig}#check_0|check_0>, "
            f"<https://bot.example/runbooks/d{sig}#check_1|check_1>, <https://bot.example/runbooks/d{sig}#check_2|check_2>"
            in text)
    assert ":black_circle: *e* unreachable: no answer · <https://bot.example/runbooks/e?sig=" in text


def test_open_incidents_unacknowledged_first_then_oldest_with_owner_and_age() -> None:
    incidents = (
        OpenIncident("acked-old", ("db",), NOW - minutes(300), acknowledged_by="U07ONCALL01"),
        OpenIncident("new", ("cache",), NOW - minutes(5), owners=("S07SREONCAL",)),
        OpenIncident("old", ("db", "queue"), NOW - minutes(125), owners=("U07LEAD0001", "S07SREONCAL")),
    )
    found = digest(incidents=incidents)
    assert [i.service for i in found.incidents] == ["old", "new", "acked-old"]
    text = said(render_digest(found, link))
    assert "*Open incidents*: 3 (2 unacknowledged)" in text
    assert ("*old* `db`, `queue` · open 2 h 5 min · *unacknowledged*, owners <@U07LEAD0001>, <!subteam^S07SREONCAL>"
            in text)
    assert "*acked-old* `db` · open 5 h · acknowledged by <@U07ONCALL01>" in text
    assert text.index("*old*") < text.index("*new*") < text.index("*acked-old*")


def test_mentions_use_slacks_syntax_for_users_and_groups() -> None:
    assert (mention("U07ONCALL01"), mention("S07SREONCAL"), mention("team <a>")) == (
        "<@U07ONCALL01>", "<!subteam^S07SREONCAL>", "team &lt;a&gt;")


def test_durations_read_as_people_say_them() -> None:
    assert [spoken(timedelta(seconds=s)) for s in (42, 60, 1830, 9900, 3 * 86400 + 7200)] == [
        "42 s", "1 min", "30 min 30 s", "2 h 45 min", "3 d 2 h"]


# --- late ---------------------------------------------------------------------------------------------------


def test_a_catch_up_digest_says_it_is_late_and_for_which_fire_time() -> None:
    found = digest(services=(healthy("a"),), due_at=NOW - minutes(162))
    assert found.late and found.late_by == minutes(162)
    message = render_digest(found, link)
    assert message.blocks[1]["text"]["text"] == (
        ":hourglass: *Late*: this is the digest due at 2026-11-25 06:18 UTC, caught up 2 h 42 min late.")
    assert message.text.startswith("Health digest (late, due 2026-11-25 06:18 UTC): all 1 healthy")


def test_a_digest_a_minute_after_its_fire_time_is_on_time() -> None:
    found = digest(services=(healthy("a"),), due_at=NOW - minutes(1))
    assert not found.late
    assert "Late" not in said(render_digest(found, link))


# --- Slack's limits -----------------------------------------------------------------------------------------


def test_an_empty_fleet_in_a_quiet_period_still_makes_a_message_slack_accepts() -> None:
    message = render_digest(digest(), link)
    accepted_by_slack(message)
    text = said(message)
    assert message.blocks[0]["text"]["text"] == "Health digest · no services"
    assert "*Fleet*: no services to report on." in text
    assert "*Open incidents*: none" in text
    assert message.text == "Health digest: no services; 0 deploys; 0 open incidents"


def test_a_thousand_healthy_services_are_one_line() -> None:
    message = render_digest(digest(tuple(healthy(f"svc-{i:04d}") for i in range(1000))), link)
    accepted_by_slack(message)
    assert message.blocks[0]["text"]["text"] == "Health digest · all 1000 healthy"
    assert "more services need attention" not in said(message)


def test_a_thousand_services_in_trouble_are_summarised_within_slacks_limits_and_counted() -> None:
    services = (*(unhealthy(f"service-with-a-long-name-{i:04d}", 8) for i in range(600)),
                *(degraded(f"degraded-{i:04d}") for i in range(200)),
                *(unreachable(f"unreachable-{i:04d}") for i in range(5)),
                *(healthy(f"healthy-{i:04d}") for i in range(195)))
    outcomes = (State.PROMOTED, State.ROLLED_BACK, State.FAILED)
    rollouts = tuple(deploy(f"service-with-a-long-name-{i:04d}", outcomes[i % 3], NOW - minutes(i + 1), ident=i,
                            reason="p99 812 ms > 500 ms " * 20) for i in range(300))
    incidents = tuple(OpenIncident(f"unreachable-{i:04d}", ("liveness", "ready", "db", "queue"), NOW - minutes(i),
                                   owners=("S07SREONCAL",)) for i in range(200))
    message = render_digest(digest(services, rollouts, incidents, (closed(3, 25),)), link)
    accepted_by_slack(message)
    text = said(message)
    shown = len(re.findall(r"^:(?:black_circle|red_circle|large_yellow_circle): \*", text, re.MULTILINE))
    assert shown > 5 and shown + left_out("services need attention", text) == 805
    assert text.index("*unreachable-0004*") < text.index("*service-with-a-long-name-0000*")
    assert "+5 more: `/health service-with-a-long-name-0000`" in text
    incidents_shown = text.count(":rotating_light:")
    assert incidents_shown + left_out("open incidents", text) == 200
    changes_shown = len(re.findall(r"^:(?:x|leftwards_arrow_with_hook|white_check_mark): \*", text, re.MULTILINE))
    assert changes_shown > 0
    assert changes_shown + left_out("deploys", text) == 300
    assert "change failure rate 67% (200 of 300 rolled back or failed)" in text
    assert message.blocks[0]["text"]["text"] == (
        "Health digest · 5 unreachable · 600 unhealthy · 200 degraded · 195 healthy")


def test_a_smaller_budget_shows_fewer_problems_but_loses_none() -> None:
    found = digest(tuple(unhealthy(f"svc-{i:03d}", 2) for i in range(40)))
    for budget in (TEXT_BUDGET, 4000, 2000):
        text = said(render_digest(found, link, budget=budget))
        assert len(text) <= budget
        shown = text.count(":red_circle: *svc-")
        assert shown + left_out("services", text) == 40
