"""DORA's five figures (https://dora.dev/guides/dora-metrics-four-keys/) from closed rollouts, against examples
worked out by hand in each test's comments: flaps, an override, a queued deploy, a `/rollback` restore, an unknown
upload time and an empty period; then how `/stats` and the digest say them, within Slack's limits."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import Config
from bot.domain.analysis import Thresholds
from bot.domain.digest import digest_of
from bot.domain.dora import (
    REWORK_WINDOW,
    Deploy,
    Incident,
    deploy_of,
    figures,
    fleet_and_services,
    images_to_read,
    records_of,
)
from bot.domain.health import FleetHealth
from bot.domain.rollout import MANUAL_ROLLBACK_IMAGE, Plan, Rollout, State, Write, make_split
from bot.render.digest import TEXT_BUDGET, render_digest
from bot.render.health import Rendered
from bot.render.stats import render_stats
from commands.grammar import Args, UserError, tokenize
from commands.stats import StatsCommand, StatsRequest
from sandbox.blockkit_text import text_of
from sandbox.slack_workspace import BOT, Workspace

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WEEK = NOW - timedelta(days=7)
PLAN = Plan(stages=(5, 50, 100), window_s=60, progress_deadline_s=600, interval_s=5,
            thresholds=Thresholds(min_requests=20, min_success_rate=99, max_p99_ms=500, max_error_logs=0))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """Day `day` of the week ending at NOW (day 1 starts at WEEK)."""
    return WEEK + timedelta(days=day - 1, hours=hour, minutes=minute)


def h(hours: float) -> timedelta:
    return timedelta(hours=hours)


def deploy(ident: int, service: str, state: State, start: datetime, minutes: float, *,
           uploaded: datetime | None = None, restored: datetime | None = None) -> Deploy:
    end = start + timedelta(minutes=minutes)
    return Deploy(ident, service, f"repo/{service}:v{ident}", state, start, end,
                  restored_at=restored if restored is not None else (None if state is State.PROMOTED else end),
                  uploaded_at=uploaded)


def restore(ident: int, service: str, start: datetime, routed_after_s: float = 30) -> Deploy:
    return Deploy(ident, service, f"{MANUAL_ROLLBACK_IMAGE}r1)", State.ROLLED_BACK, start, start, restore=True,
                  restored_at=start + timedelta(seconds=routed_after_s))


def test_an_empty_period_has_no_rates_and_no_times() -> None:
    found = figures([deploy(1, "api", State.PROMOTED, at(1, 0) - h(48), 20)], since=WEEK, now=NOW)
    assert found.deploys == 0
    assert (found.per_day, found.change_failure_rate, found.rework_rate) == (None, None, None)
    assert (found.lead_time, found.recovery_time) == (None, None)


def test_a_week_of_one_service_worked_out_by_hand() -> None:
    """api, in the week:
    1. day 1 09:00, 30 min, promoted; uploaded 08:00 -> lead 1 h 30 min.
    2. day 2 10:00, 20 min, rolled back; its rollback routed at 10:21 -> recovery 21 min.
    3. day 2 15:00 (5 h after 2 failed), promoted, uploaded 14:00, 40 min -> lead 1 h 40 min; rework.
    4. day 5 09:00, promoted 09:30; uploaded 03:30 -> lead 6 h; 66 h after the last failure: planned.
    Deploys 4 over 7 days: 4/7 a day; failure rate 1/4; lead times 1:30, 1:40, 6:00 -> median 1 h 40 min;
    recovery 21 min; rework 1/4."""
    records = [
        deploy(1, "api", State.PROMOTED, at(1, 9), 30, uploaded=at(1, 8)),
        deploy(2, "api", State.ROLLED_BACK, at(2, 10), 20, restored=at(2, 10, 21)),
        deploy(3, "api", State.PROMOTED, at(2, 15), 40, uploaded=at(2, 14)),
        deploy(4, "api", State.PROMOTED, at(5, 9), 30, uploaded=at(5, 3, 30)),
    ]
    found = figures(records, since=WEEK, now=NOW)
    assert (found.deploys, found.failed, found.promoted) == (4, 1, 3)
    assert found.per_day == pytest.approx(4 / 7)
    assert found.change_failure_rate == 0.25
    assert found.lead_time == h(1) + timedelta(minutes=40)
    assert found.recovery_time == timedelta(minutes=21)
    assert found.rework == 1 and found.rework_rate == 0.25


def test_a_flapping_service_counts_every_attempt_and_every_fix_after_a_failure_is_rework() -> None:
    """worker flaps: four deploys in one afternoon, each 10 min: failed at 13:10, rolled back at 14:10 (routed
    14:11), rolled back at 15:10 (routed 15:12), promoted at 16:10.
    Failure rate 3/4. Recoveries 10 min (a FAILED deploy that never took traffic: recovered at its end), 11 min,
    12 min -> median 11 min. Rework: deploys 2, 3, 4 each start within 24 h of a failure -> 3/4; deploy 1 not."""
    records = [
        deploy(1, "worker", State.FAILED, at(3, 13), 10),
        deploy(2, "worker", State.ROLLED_BACK, at(3, 14), 10, restored=at(3, 14, 11)),
        deploy(3, "worker", State.ROLLED_BACK, at(3, 15), 10, restored=at(3, 15, 12)),
        deploy(4, "worker", State.PROMOTED, at(3, 16), 10, uploaded=at(3, 12)),
    ]
    found = figures(records, since=WEEK, now=NOW)
    assert (found.deploys, found.failed) == (4, 3)
    assert found.change_failure_rate == 0.75
    assert found.recovery_time == timedelta(minutes=11)
    assert found.rework == 3
    assert found.lead_time == h(4) + timedelta(minutes=10)  # uploaded 12:00, promoted 16:10


def test_a_promoted_deploy_undone_by_a_restore_failed_and_recovered_when_the_restore_routed() -> None:
    """api promoted day 4 10:00-10:30; the post-deploy watch warned and someone pressed Roll back at 11:00, routed
    at 11:00:30. Then a fix at 13:00, promoted 13:20.
    Deploys 2 (the restore is no deploy); failed 1 -> 50 %. Recovery 10:00 -> 11:00:30 = 1 h 0 min 30 s.
    Lead time only of the fix (the undone deploy is a failure, not a delivered change): uploaded 12:30 -> 50 min.
    The fix starts 2 h after the restore: rework 1/2."""
    records = [
        deploy(1, "api", State.PROMOTED, at(4, 10), 30, uploaded=at(4, 9)),
        restore(2, "api", at(4, 11)),
        deploy(3, "api", State.PROMOTED, at(4, 13), 20, uploaded=at(4, 12, 30)),
    ]
    found = figures(records, since=WEEK, now=NOW)
    assert (found.deploys, found.failed, found.promoted) == (2, 1, 1)
    assert found.recovery_time == h(1) + timedelta(seconds=30)
    assert found.lead_time == timedelta(minutes=50)
    assert found.rework == 1


def test_a_queued_deploy_counts_when_it_ran_and_its_wait_is_lead_time() -> None:
    """A deploy of v7 queued behind another started at 14:00 (when the first was promoted) and was promoted at
    14:30; its image was uploaded at 11:00, before it was queued: lead time 3 h 30 min, queue included. A queued
    deploy still waiting is no rollout: it is not in the records, and not counted."""
    records = [deploy(1, "api", State.PROMOTED, at(6, 13, 30), 30, uploaded=at(6, 13)),
               deploy(2, "api", State.PROMOTED, at(6, 14), 30, uploaded=at(6, 11))]
    found = figures(records, since=WEEK, now=NOW)
    assert found.deploys == 2
    assert found.lead_times == (timedelta(minutes=60), h(3) + timedelta(minutes=30))
    assert found.lead_time == h(2) + timedelta(minutes=15)  # median of two: their mean
    assert found.rework == 0  # a queued deploy after a promotion is planned work


def test_an_override_deploy_during_an_incident_is_rework_and_one_after_it_is_not() -> None:
    """An incident of api open day 2 08:00-09:00. A deploy with override="hotfix" at 08:30 (through a freeze) is
    unplanned; one at 09:30, after it resolved and with no failed deploy before it, is planned. An incident of
    another service changes nothing here. Rework 1/2; neither deploy failed."""
    records = [deploy(1, "api", State.PROMOTED, at(2, 8, 30), 10, uploaded=at(2, 8)),
               deploy(2, "api", State.PROMOTED, at(2, 9, 30), 10, uploaded=at(2, 9))]
    incidents = [Incident("api", at(2, 8), at(2, 9)), Incident("worker", at(2, 9), None)]
    found = figures(records, since=WEEK, now=NOW, incidents=incidents)
    assert (found.rework, found.failed) == (1, 0)
    assert found.rework_rate == 0.5


def test_an_unknown_upload_leaves_that_lead_time_unknown_not_zero() -> None:
    """Two promotions: one image uploaded 2 h before (lead 2 h); one the registry could not tell about, and one
    whose tag now points at an image uploaded after the promotion. Lead time 2 h over 1 of 3; 2 unknown."""
    records = [deploy(1, "api", State.PROMOTED, at(2, 10), 0, uploaded=at(2, 8)),
               deploy(2, "api", State.PROMOTED, at(3, 10), 0, uploaded=None),
               deploy(3, "api", State.PROMOTED, at(4, 10), 0, uploaded=at(4, 11))]
    found = figures(records, since=WEEK, now=NOW)
    assert found.lead_time == h(2)
    assert (found.promoted, found.lead_unknown) == (3, 2)


def test_a_failure_not_recovered_yet_has_no_time_and_is_said_to_be_failing() -> None:
    records = [replace(deploy(1, "api", State.ROLLED_BACK, at(7, 10), 10), restored_at=None)]
    found = figures(records, since=WEEK, now=NOW)
    assert (found.failed, found.recovery_time, found.still_failing) == (1, None, 1)


def test_fleet_and_per_service_figures_and_deploys_before_the_period_decide_rework() -> None:
    """worker failed 3 h before the week began; its deploy 1 h into the week is rework (within 24 h). api's one
    deploy is planned. Fleet: 2 deploys, 1 rework, none failed in the period."""
    records = [deploy(1, "worker", State.FAILED, WEEK - h(3), 10),
               deploy(2, "worker", State.PROMOTED, WEEK + h(1), 10, uploaded=WEEK),
               deploy(3, "api", State.PROMOTED, at(3, 10), 10, uploaded=at(3, 9))]
    fleet, each = fleet_and_services(records, ["api", "worker", "grader"], since=WEEK, now=NOW)
    assert (fleet.deploys, fleet.failed, fleet.rework) == (2, 0, 1)
    assert [(f.service, f.deploys, f.rework) for f in each] == [("api", 1, 0), ("worker", 1, 1), ("grader", 0, 0)]


# --- from rollouts ------------------------------------------------------------------------------------------


def rollout(ident: int, state: State, start: datetime, end: datetime | None, *, image: str = "repo/api:v3",
            progress_at: datetime | None = None, pending: Write | None = None) -> Rollout:
    return Rollout(id=ident, service="api", image=image, stable="r1", candidate="r2", plan=PLAN,
                   requested_by="U07ONCALL01", created_at=start, next_check_at=start, traffic=make_split({"r1": 100}),
                   state=state, ended_at=end, progress_at=progress_at, pending=pending)


def test_records_of_rollouts_take_recovery_from_the_routed_rollback_and_skip_open_ones() -> None:
    routed = rollout(1, State.ROLLED_BACK, at(1, 10), at(1, 10, 20), progress_at=at(1, 10, 21))
    never_routed_traffic = rollout(2, State.FAILED, at(1, 11), at(1, 11, 5), progress_at=at(1, 11, 1))
    pending = rollout(3, State.ROLLED_BACK, at(1, 12), at(1, 12, 5),
                      pending=Write("set_traffic", make_split({"r1": 100}), False))
    running = rollout(4, State.ANALYSING, at(1, 13), None)
    promoted = rollout(5, State.PROMOTED, at(1, 14), at(1, 14, 30), image="repo/api:v5")
    made = records_of([routed, never_routed_traffic, pending, running, promoted], {"repo/api:v5": at(1, 13)})
    assert [(d.id, d.restored_at) for d in made] == [(1, at(1, 10, 21)), (2, at(1, 11, 5)), (5, None)]
    assert made[-1].uploaded_at == at(1, 13)
    manual = replace(rollout(6, State.ROLLED_BACK, at(1, 15), at(1, 15), image=f"{MANUAL_ROLLBACK_IMAGE}r1)"),
                     progress_at=at(1, 15, 1))
    made_restore = deploy_of(manual)
    assert made_restore is not None and made_restore.restore and made_restore.restored_at == at(1, 15, 1)


def test_only_images_promoted_in_the_period_are_read_from_the_registry() -> None:
    rollouts = [rollout(1, State.PROMOTED, at(1, 10), at(1, 11), image="repo/api:v1"),
                rollout(2, State.ROLLED_BACK, at(2, 10), at(2, 11), image="repo/api:v2"),
                rollout(3, State.PROMOTED, WEEK - h(30), WEEK - h(29), image="repo/api:v0"),
                rollout(4, State.ROLLED_BACK, at(3, 10), at(3, 10), image=f"{MANUAL_ROLLBACK_IMAGE}r1)")]
    assert images_to_read(rollouts, WEEK) == ["repo/api:v1"]


# --- how they read ------------------------------------------------------------------------------------------


def said(message: Rendered) -> str:
    return text_of({"text": message.text, "blocks": message.blocks})


def accepted_by_slack(message: Rendered) -> None:
    workspace = Workspace(bot_token=f"xoxb-{secrets.token_hex(12)}", channels={"deploys": "C07DEPLOYS1"})
    workspace.post("C07DEPLOYS1", BOT.id, message.text, message.blocks)
    assert len(text_of({"text": message.text, "blocks": message.blocks})) <= TEXT_BUDGET


def test_a_figure_without_data_says_so_in_words_never_zero() -> None:
    empty = figures([], since=WEEK, now=NOW)
    text = said(render_stats(empty, (), window=REWORK_WINDOW, service="api"))
    assert "*Deployment frequency*: no deploys in 7 d" in text
    for figure in ("Lead time for changes", "Change failure rate", "Failed deployment recovery time",
                   "Deployment rework rate"):
        assert f"*{figure}*: no deploys" in text
    assert "0%" not in text and "0.0 a day" not in text


def test_the_worked_week_reads_as_computed() -> None:
    records = [deploy(1, "api", State.PROMOTED, at(1, 9), 30, uploaded=at(1, 8)),
               deploy(2, "api", State.ROLLED_BACK, at(2, 10), 20, restored=at(2, 10, 21)),
               deploy(3, "api", State.PROMOTED, at(2, 15), 40, uploaded=None),
               deploy(4, "api", State.PROMOTED, at(5, 9), 30, uploaded=at(5, 3, 30))]
    found = figures(records, since=WEEK, now=NOW, service="api")
    text = said(render_stats(found, (), window=REWORK_WINDOW, service="api", unknown_why="not in Artifact Registry"))
    assert "*Deployment frequency*: 4 deploys in 7 d · 0.6 a day" in text
    # lead times 1 h 30 min and 6 h: median 3 h 45 min; deploy 3's image unknown
    assert ("*Lead time for changes*: median 3 h 45 min, image upload to promotion (2 of 3 promotions; 1 unknown: "
            "not in Artifact Registry)") in text
    assert "*Change failure rate*: 25% (1 of 4 rolled back, failed or undone by `/rollback`)" in text
    assert ("*Failed deployment recovery time*: median 21 min, deploy start to a good revision serving "
            "(1 failed deploy)") in text
    assert "*Deployment rework rate*: 25% (1 of 4 started within 1 d of a failure or during an incident)" in text


def test_the_fleet_message_lists_busy_services_first_and_fits_slack_for_a_thousand_services() -> None:
    services = [f"svc-{i:04d}" for i in range(1000)]
    records = [deploy(i, services[i % 300], State.PROMOTED if i % 4 else State.ROLLED_BACK, at(1 + i % 6, 10), 20,
                      uploaded=at(1, 0)) for i in range(1, 900)]
    fleet, each = fleet_and_services(records, services, since=WEEK, now=NOW)
    message = render_stats(fleet, each, window=REWORK_WINDOW)
    accepted_by_slack(message)
    text = said(message)
    assert f"*Deployment frequency*: {fleet.deploys} deploys in 7 d" in text
    assert "…and 275 more services with deploys: `/stats <service>`" in text
    assert "No deploys: svc-0300" in text


def test_the_digest_carries_the_weeks_five_figures_in_one_line() -> None:
    records = [deploy(1, "api", State.PROMOTED, at(1, 9), 30, uploaded=at(1, 8)),
               deploy(2, "api", State.ROLLED_BACK, at(2, 10), 20, restored=at(2, 10, 21))]
    week = figures(records, since=WEEK, now=NOW)
    made = digest_of(FleetHealth(()), (), (), (), since=NOW - timedelta(days=1), now=NOW, due_at=NOW, dora=week)
    text = said(render_digest(made, lambda service, check: "https://bot.example/rb"))
    assert ("*DORA, last 7 d*: 2 deploys (0.3/day) · lead time 1 h 30 min · change failure 50% · recovery 21 min · "
            "rework 0%") in text
    quiet = digest_of(FleetHealth(()), (), (), (), since=NOW - timedelta(days=1), now=NOW, due_at=NOW,
                      dora=figures([], since=WEEK, now=NOW))
    assert "*DORA, last 7 d*: no deploys in 7 d" in said(render_digest(quiet, lambda service, check: ""))


# --- /stats's grammar ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "service", "period"), [
    ("", None, "7d"), ("30d", None, "30d"), ("prediction-worker", "prediction-worker", "7d"),
    ("30D prediction-worker", "prediction-worker", "30d"), ("prediction-w 7d", "prediction-worker", "7d")])
def test_stats_takes_a_service_and_a_period_in_any_order(example_config: Config, typed: str, service: str | None,
                                                         period: str) -> None:
    args = tokenize(typed, StatsCommand.usage)
    assert isinstance(args, Args)
    assert StatsCommand().parse(args, example_config) == StatsRequest(service, period)


@pytest.mark.parametrize(("typed", "problem", "instead"), [
    ("14d", "`14d` is not a period I keep: `7d` or `30d`.", "`/stats 30d`"),
    ("7d 30d", "give one period, `7d` or `30d`.", "`/stats 30d`"),
    ("prediction-worker nba-grading-service", "`/stats` takes one service", "`/stats [service] [7d|30d]`"),
    ("since=monday", "`since=` is not an option of this command", "`/stats [service] [7d|30d]`")])
def test_stats_says_what_was_wrong_and_what_to_type(example_config: Config, typed: str, problem: str,
                                                    instead: str) -> None:
    args = tokenize(typed, StatsCommand.usage)
    assert isinstance(args, Args)
    refused = StatsCommand().parse(args, example_config)
    assert isinstance(refused, UserError)
    assert refused.problem.startswith(problem) and refused.instead == instead
