"""The Home tab reads problems first and stays a view Slack accepts (100 blocks, its field limits) at 1,000 services
with everything going wrong at once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.domain.analysis import Thresholds
from bot.domain.change_gate import Lock
from bot.domain.health import Check, FleetHealth, ServiceHealth, Status
from bot.domain.incidents import CheckState, Incident
from bot.domain.policy import Grant
from bot.domain.rollout import Plan, Rollout, State, make_split
from bot.engine.home import allowed_actions, from_home
from bot.render.home import MAX_VIEW_BLOCKS, HomeData, home_view
from sandbox.blockkit_text import text_of
from sandbox.slack_home import _view_problems

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ME, OTHER = "U07ONCALL01", "U07LEAD0001"
PLAN = Plan(stages=(5, 50, 100), window_s=300, progress_deadline_s=1800, interval_s=10,
            thresholds=Thresholds(min_requests=20, min_success_rate=99, max_p99_ms=500, max_error_logs=0))


def runbook(service: str, check: str | None) -> str:
    return f"https://chatops.example.com/runbooks/{service}.md?sig={'A' * 43}#{check or 'overview'}"


def health(index: int, status: Status) -> ServiceHealth:
    name = f"svc-{index:04d}"
    checks = () if status is Status.HEALTHY else (Check("bigquery", "fail", "readiness", "timeout " * 40),)
    return ServiceHealth(name, status, "bigquery failing: " + "x" * 300, checks)


def rollout(index: int, state: State = State.ANALYSING, by: str = OTHER) -> Rollout:
    return Rollout(id=index, service=f"svc-{index:04d}", image=f"repo/svc-{index:04d}:v{index}",
                   stable=f"svc-{index:04d}-00001-abc", candidate=f"svc-{index:04d}-v{index}", plan=PLAN,
                   requested_by=by, created_at=NOW - timedelta(minutes=index), next_check_at=NOW,
                   traffic=make_split({f"svc-{index:04d}-00001-abc": 95, f"svc-{index:04d}-v{index}": 5}),
                   state=state, stage=0, stage_started_at=NOW)


def incident(index: int, acked_by: str = "") -> Incident:
    return Incident(f"svc-{index:04d}", id=index, state="open",
                    checks=(CheckState("bigquery", NOW, 3, "timeout"),), opened_at=NOW - timedelta(minutes=index),
                    acknowledged_by=acked_by)


def crisis(services: int = 1000) -> HomeData:
    """Everything at once: a third of the fleet in trouble, 40 rollouts, 30 incidents, locks, many deploys."""
    statuses = [Status.UNREACHABLE, Status.UNHEALTHY, Status.DEGRADED] + [Status.HEALTHY] * 6
    fleet = FleetHealth(tuple(health(i, statuses[i % len(statuses)]) for i in range(services)))
    return HomeData(viewer=ME, now=NOW, fleet=fleet, fleet_at=NOW, rollouts=[rollout(i) for i in range(1, 41)],
                    incidents=[incident(i, ME if i == 29 else "") for i in range(1, 31)],
                    locks=[Lock(f"svc-{i:04d}", OTHER, "maintenance " * 20, NOW) for i in range(60)],
                    freeze_now=None, freeze_next=None,
                    my_deploys=[rollout(i, State.PROMOTED, ME) for i in range(50, 70)],
                    may=["deploy", "rollback", "promote"], notice="Your last click: *rollback*: *ok*", runbook=runbook)


def test_a_thousand_services_in_trouble_fit_in_a_view_slack_accepts() -> None:
    view = home_view(crisis())
    assert len(view["blocks"]) <= MAX_VIEW_BLOCKS
    assert _view_problems(view) == [], "the Slack emulator's own checks of a Home tab view"
    said = text_of({"blocks": view["blocks"]})
    assert "…and 319 more services need attention: `/health all`" in said, "334 in trouble, 15 shown"
    assert "…and 30 more rollouts: `/status`" in said and "…and 20 more incidents: `/incidents`" in said


def test_problems_come_first_worst_first_with_runbook_links() -> None:
    said = text_of({"blocks": home_view(crisis())["blocks"]})
    assert said.index("112 unreachable") < said.index("111 unhealthy") < said.index("111 degraded")
    assert "*svc-0000* unreachable" in said and "*svc-0126* unreachable" in said, "the 15 worst, by name"
    assert "*svc-0001* unhealthy" not in said, "a worse one is never crowded out by a lesser one"
    assert "svc-0003*" not in said.split("Rollouts in progress")[0], "healthy services are only counted"
    assert runbook("svc-0000", "bigquery") in said


def test_the_viewers_own_incident_comes_first() -> None:
    view = home_view(crisis())
    incidents = [b for b in view["blocks"] if b["type"] == "section" and "incident #" in b["text"]["text"]]
    assert "incident #29" in incidents[0]["text"]["text"] and "acknowledged by you" in incidents[0]["text"]["text"]
    assert incidents[1]["accessory"]["action_id"] == "incident_ack", "an unacknowledged one can be acknowledged"


def test_roll_back_and_promote_ask_first_naming_the_revisions() -> None:
    view = home_view(replace(crisis(), rollouts=[rollout(7)]))
    (row,) = [b for b in view["blocks"] if b["type"] == "actions"]
    by_id = {e["action_id"]: e for e in row["elements"]}
    assert set(by_id) == {"rollout_promote", "rollout_pause", "rollout_rollback"}
    assert by_id["rollout_rollback"]["value"] == "7:0", "the rollout message's own value: same pipeline"
    assert "to svc-0007-00001-abc; svc-0007-v7 stops serving" in by_id["rollout_rollback"]["confirm"]["text"]["text"]
    assert by_id["rollout_rollback"]["confirm"]["style"] == "danger"
    assert "confirm" in by_id["rollout_promote"] and "confirm" not in by_id["rollout_pause"]


def test_each_lock_shown_has_an_unlock_that_asks_first_and_names_that_lock() -> None:
    said = text_of({"blocks": home_view(crisis())["blocks"]})
    assert "…and 55 more locks: `/status`" in said, "60 locks, 5 shown"
    shown = [b for b in home_view(crisis())["blocks"] if b.get("accessory", {}).get("action_id") == "lock_unlock"]
    assert len(shown) == 5 and "*svc-0000* locked by <@U07LEAD0001>" in shown[0]["text"]["text"]
    unlock = shown[0]["accessory"]
    assert unlock["value"] == "svc-0000@1795597200000000", "the lock, not only its service"
    assert unlock["confirm"]["title"]["text"] == "Unlock svc-0000?"
    assert "will no longer be refused by the lock taken 2026-11-25 09:00 UTC" in unlock["confirm"]["text"]["text"]


def test_a_quiet_fleet_says_so() -> None:
    quiet = replace(crisis(10), fleet=FleetHealth(tuple(health(i, Status.HEALTHY) for i in range(10))), rollouts=[],
                    incidents=[], locks=[], my_deploys=[], may=[], notice="")
    said = text_of({"blocks": home_view(quiet)["blocks"]})
    assert "10 healthy" in said and "Nothing is being deployed" in said and "None. " in said
    assert "ask for a role" in said


def test_what_the_viewer_may_do_is_what_their_grants_give() -> None:
    grants = [Grant("deployer", frozenset({ME}), frozenset({"deploy", "rollback"}), frozenset({"*"})),
              Grant("everyone", frozenset({"*"}), frozenset({"status"}), frozenset({"*"})),
              Grant("grading", frozenset({"S07GRADING1"}), frozenset({"ack"}), frozenset({"grading-*"}), team="g")]
    assert allowed_actions(grants, ME, frozenset()) == ["deploy", "rollback", "status"]
    assert allowed_actions(grants, OTHER, frozenset({"S07GRADING1"})) == ["ack", "status"]


def test_only_a_click_in_a_home_tab_is_taken_for_one() -> None:
    home = {"container": {"type": "view", "view_id": "V1"}, "view": {"type": "home"}, "user": {"id": ME}}
    assert from_home(home) == ME
    assert from_home({**home, "view": {"type": "modal"}}) is None
    assert from_home({**home, "container": {"type": "message"}}) is None
