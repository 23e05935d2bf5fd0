"""Change control's pure parts: freeze windows (recurring across a DST change, fixed), locks, the gate's verdicts and
their texts, the engine's hold at a stage boundary, the config's freeze validation, and the digest's lines."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import ConfigError, parse_config
from bot.domain.change_gate import Go, Lock, Refusal, gate
from bot.domain.digest import digest_of
from bot.domain.freeze import Freeze, in_force, next_window
from bot.domain.health import FleetHealth
from bot.domain.rollout import Command, State, Write, decide, make_split
from bot.render.digest import render_digest
from tests.conftest import EXAMPLE_CONFIG
from tests.unit.test_digest import said
from tests.unit.test_rollout import CANDIDATE, PASS, STABLE, at, at_stage, live

NEW_YORK = "America/New_York"
PRE_GAME = Freeze("pre-game", NEW_YORK, frozenset({"prediction-worker"}), "tonight's props",
                  cron="0 18 * * *", duration=timedelta(hours=4))
HOLIDAYS = Freeze("holidays", NEW_YORK, None, start=datetime(2026, 12, 24, 18, tzinfo=UTC),
                  end=datetime(2026, 12, 26, 5, tzinfo=UTC))


def utc(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# -- windows ------------------------------------------------------------------------------------------------------


def test_a_recurring_window_starts_at_the_same_local_time_on_both_sides_of_a_dst_change() -> None:
    """New York leaves summer time on 2026-11-01: 18:00 local is 22:00 UTC the evening before, 23:00 UTC that day."""
    before = in_force([PRE_GAME], "prediction-worker", utc(31, 22, 30, month=10))
    assert before is not None and (before.starts_at, before.ends_at) == (utc(31, 22, month=10), utc(1, 2))
    assert in_force([PRE_GAME], "prediction-worker", utc(1, 22, 30)) is None, "22:30 UTC is 17:30 EST: not yet"
    after = in_force([PRE_GAME], "prediction-worker", utc(1, 23, 30))
    assert after is not None and (after.starts_at, after.ends_at) == (utc(1, 23), utc(2, 3))
    assert after.local(after.ends_at) == "Sun 22:00 EST (2026-11-02 03:00 UTC)"
    assert in_force([PRE_GAME], "prediction-worker", utc(2, 3)) is None, "the end is not in the window"
    upcoming = next_window([PRE_GAME], "prediction-worker", utc(1, 22, 30))
    assert upcoming is not None and upcoming.starts_at == utc(1, 23)


def test_a_window_holds_only_its_services_and_a_fixed_one_its_dates() -> None:
    assert in_force([PRE_GAME], "nba-grading-service", utc(1, 23, 30)) is None
    assert in_force([PRE_GAME], None, utc(1, 23, 30)) is not None, "the fleet's view sees every service's windows"
    assert in_force([HOLIDAYS], "nba-grading-service", utc(24, 17, month=12)) is None
    held = in_force([HOLIDAYS, PRE_GAME], "prediction-worker", utc(24, 23, month=12))
    assert held is not None and held.name == "holidays", "of two windows, the one that ends last is waited for"
    assert next_window([HOLIDAYS], None, utc(26, 5, month=12)) is None, "a fixed window in the past has no next"


# -- the gate -----------------------------------------------------------------------------------------------------

NOW = utc(10, 15)
LOCK = Lock("prediction-worker", "U07LEAD0001", "model retraining", NOW - timedelta(hours=1), utc(10, 18))


def deploy(user: str = "U07ONCALL01", **given: object) -> Go | Refusal:
    fields: dict[str, object] = {"service": "prediction-worker", "user": user, "now": NOW, "locks": [LOCK],
                                 "freezes": [PRE_GAME], "overriders": ("lead",)}
    return gate(**{**fields, **given})  # type: ignore[arg-type]


def test_a_lock_refuses_others_naming_holder_reason_end_and_the_override() -> None:
    refused = deploy()
    assert isinstance(refused, Refusal)
    assert refused.text == (":lock: prediction-worker is locked by <@U07LEAD0001> until 2026-11-10 18:00 UTC: model "
                            "retraining\nTo go ahead anyway: `/deploy prediction-worker override=\"why\"` (needs the "
                            "`override` permission; it is announced and audited), or ask <@U07LEAD0001> to "
                            "`/unlock prediction-worker`.")
    assert deploy("U07LEAD0001") == Go(), "the holder may deploy what they locked"
    assert deploy(now=utc(10, 18)) == Go(), "a lock ends at its end"
    assert deploy(service="nba-grading-service") == Go()
    everything = Lock("all", "U07LEAD0001", "release freeze", NOW)
    refused = deploy(service="nba-grading-service", locks=[everything])
    assert isinstance(refused, Refusal) and "every service is locked by <@U07LEAD0001> until unlocked" in refused.text


def test_an_override_needs_the_permission_and_says_what_it_went_past() -> None:
    refused = deploy(override="hotfix for tonight", may_override=False)
    assert isinstance(refused, Refusal) and "`override=` needs the *lead* role, which you don't have" in refused.text
    passed = deploy(override="hotfix for tonight", may_override=True)
    assert passed == Go(("prediction-worker is locked by <@U07LEAD0001> until 2026-11-10 18:00 UTC: model "
                         "retraining",), ""), "past a lock only: the rollout is not let through freeze windows"


def test_a_freeze_window_refuses_everyone_naming_the_window_its_end_and_the_override() -> None:
    evening = utc(10, 23, 30)  # 18:30 in New York
    refused = deploy("U07LEAD0001", now=evening, command="/promote")
    assert isinstance(refused, Refusal)
    assert refused.text == (":snowflake: prediction-worker is in freeze window `pre-game` (tonight's props), until "
                            "Tue 22:00 EST (2026-11-11 03:00 UTC)\nTo go ahead anyway: `/promote prediction-worker "
                            "override=\"why\"` (needs the `override` permission; it is announced and audited), or "
                            "wait until it ends.")
    passed = deploy("U07LEAD0001", now=evening, override="odds feed fix", may_override=True)
    assert isinstance(passed, Go) and passed.freeze == "<@U07LEAD0001>: odds feed fix"


# -- the engine's hold --------------------------------------------------------------------------------------------

WINDOW = PRE_GAME.around(utc(10, 23, 30))


def test_a_stage_that_passes_during_a_window_pauses_at_its_boundary_and_says_how_to_go_on() -> None:
    assert WINDOW is not None
    held = decide(at_stage(0), live({STABLE: 95, CANDIDATE: 5}), at(61), PASS, WINDOW)
    assert held.write is None and held.rollout.state is State.PAUSED and held.rollout.percent == 5
    said = " ".join(note.text for note in held.notes)
    assert "stage 5% passed" in said and "freeze window `pre-game`" in said and "traffic stays at 5%" in said
    assert '`/resume svc override="why"`' in said and "`/resume svc` once the window has ended" in said
    free = decide(at_stage(0), live({STABLE: 95, CANDIDATE: 5}), at(61), PASS)
    assert free.write == Write("set_traffic", make_split({STABLE: 50, CANDIDATE: 50}), True), "no window: it goes on"
    overridden = decide(at_stage(0, override="<@U07LEAD0001>: hotfix"), live({STABLE: 95, CANDIDATE: 5}), at(61),
                        PASS, WINDOW)
    assert overridden.write == free.write, "a rollout whose deploy overrode the window goes on through it"


def test_during_a_window_a_rollback_and_a_pause_go_ahead_while_a_promote_needs_an_override() -> None:
    assert WINDOW is not None
    split = live({STABLE: 95, CANDIDATE: 5})
    rollback = decide(at_stage(0, commands=(Command("rollback", "U2"),)), split, at(10), None, WINDOW)
    assert rollback.write == Write("set_traffic", make_split({STABLE: 100}), False)
    assert rollback.rollout.state is State.ROLLED_BACK
    pause = decide(at_stage(0, commands=(Command("pause", "U2"),)), split, at(10), None, WINDOW)
    assert pause.rollout.state is State.PAUSED and pause.answers[0].applied
    promote = decide(at_stage(0, commands=(Command("promote", "U2"),)), split, at(10), None, WINDOW)
    assert promote.write is None and not promote.answers[0].applied
    assert "freeze window `pre-game`" in promote.answers[0].text
    assert '`/promote svc override="why"`' in promote.answers[0].text
    forced = decide(at_stage(0, commands=(Command("promote", "U2", override="odds fix"),)), split, at(10), None,
                    WINDOW)
    assert forced.write == Write("set_traffic", make_split({STABLE: 50, CANDIDATE: 50}), True)
    assert forced.rollout.override == "<@U2>: odds fix", "the rollout goes on advancing through the window"
    resumed = decide(replace(pause.rollout, commands=(Command("resume", "U2"),)), split, at(20), None, WINDOW)
    assert resumed.write is None and not resumed.answers[0].applied


# -- the config ---------------------------------------------------------------------------------------------------

BASE = EXAMPLE_CONFIG.read_text().split("\nfreezes:")[0]


def problems(freezes: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(f"{BASE}\nfreezes:\n{freezes}")
    return [str(problem) for problem in raised.value.problems]


def test_the_example_freezes_the_prediction_services_on_game_day_evenings_eastern_time() -> None:
    window = parse_config(EXAMPLE_CONFIG.read_text()).freeze_windows()[0]
    assert (window.cron, window.duration, window.zone) == ("0 18 * * *", timedelta(hours=4), NEW_YORK)
    assert window.services is not None and "prediction-worker" in window.services


@pytest.mark.parametrize(("freezes", "expected"), [
    ("  - {name: x, cron: '0 18 * * *'}",
     "freezes.0.duration: `cron` needs `duration`, how long each window lasts: a recurring window takes `cron` and "
     "`duration`, e.g. cron: '0 18 * * *' and duration: 4h"),
    ("  - {name: x, cron: '0 18 * *', duration: 4h}",
     "freezes.0.cron: a cron line has 5 fields (minute hour day month weekday), e.g. '0 8 * * 1-5'; got '0 18 * *'"),
    ("  - {name: x, cron: '0 18 * * *', duration: 4h, timezone: Eastern}",
     "freezes.0.timezone: unknown time zone 'Eastern'; write an IANA name such as 'America/Los_Angeles'"),
    ("  - {name: x, start: 2026-12-24, end: 2026-12-23}", "freezes.0.end: end (2026-12-23) must come after start "
                                                          "(2026-12-24)"),
    ("  - {name: x, start: '2026-12-24 18:00', cron: '0 18 * * *', duration: 4h}",
     "freezes.0.cron: give `cron` or `start`/`end`, not both: a recurring window takes `cron` and `duration`, e.g. "
     "cron: '0 18 * * *' and duration: 4h; a fixed one takes `start` and `end`, e.g. start: '2026-12-24 18:00' and "
     "end: '2026-12-26 00:00'"),
    ("  - {name: x, start: 2026-12-24, end: 2026-12-26, services: [prediction-wroker]}",
     "freezes.0.services: unknown service 'prediction-wroker'; did you mean 'prediction-worker'?"),
])
def test_a_freeze_that_cannot_work_is_refused_naming_the_field_and_the_fix(freezes: str, expected: str) -> None:
    assert any(problem.startswith(expected) for problem in problems(freezes)), problems(freezes)


def test_a_fixed_window_is_read_in_its_zone() -> None:
    config = parse_config(f"{BASE}\nfreezes:\n  - {{name: holidays, start: '2026-12-24 18:00', end: 2026-12-26, "
                          "timezone: America/New_York}")
    window = config.freeze_windows()[0]
    assert (window.start, window.end) == (datetime(2026, 12, 24, 23, tzinfo=UTC), datetime(2026, 12, 26, 5, tzinfo=UTC))


# -- the digest ---------------------------------------------------------------------------------------------------


def test_the_digest_shows_the_locks_in_force_and_the_current_and_next_freeze_window() -> None:
    evening = utc(10, 23, 30)
    ended = Lock("nba-grading-service", "U07ONCALL01", "backfill", evening - timedelta(hours=3), evening)
    made = digest_of(FleetHealth(()), (), (), (), since=evening - timedelta(days=1), now=evening, due_at=evening,
                     locks=[LOCK, ended, Lock("all", "U07LEAD0001", "release 1.4", evening)],
                     freeze=in_force([PRE_GAME], None, evening), next_freeze=next_window([PRE_GAME], None, evening))
    text = said(render_digest(made, lambda service, step: None))
    assert "every service locked by <@U07LEAD0001> until unlocked: release 1.4" in text
    assert "backfill" not in text, "a lock past its end is not shown"
    assert "*frozen* for prediction-worker: freeze window `pre-game` (tonight's props), until Tue 22:00 EST" in text
    assert "next freeze window `pre-game` for prediction-worker: Wed 18:00 EST (2026-11-11 23:00 UTC)" in text
