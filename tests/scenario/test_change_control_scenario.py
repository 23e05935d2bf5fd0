"""Change control as people meet it on the sandbox: a lock refusing a deploy and an override going past it (announced
in the deploy channel, audited), and a freeze window that starts while a canary is at its first stage, holding it at
the stage boundary; rollbacks go ahead through both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.config import Config, FreezeWindow
from sandbox.blockkit_text import text_of
from tests.scenario.harness import Scenario, fast, scenario

SERVICE = "prediction-worker"


def told(*words: str) -> Callable[[dict[str, Any]], bool]:
    """A message whose text (mentions as Slack has them, `<@U…>`) holds every one of `words`."""
    return lambda message: all(word in message.get("text", "") for word in words)


async def audit_rows(fleet: Scenario, action: str) -> list[tuple[str, str, str]]:
    rows = await asyncio.to_thread(fleet.bot.runtime.store.audit, limit=50, service=SERVICE)
    return [(row.user_id, row.outcome, row.detail) for row in rows if row.action == action]


async def unlock(fleet: Scenario, user: str, announcement: dict[str, Any], confirmed: bool = True) -> dict[str, Any]:
    """Press the lock announcement's Unlock; unconfirmed, Slack shows its dialog and sends nothing."""
    answer = await fleet.http.post(f"{fleet.user_side}/actions", json={
        "user": user, "channel": "deploys", "message_ts": announcement["ts"], "action_id": "lock_unlock",
        "confirmed": confirmed})
    seen: dict[str, Any] = answer.json()
    return seen


async def test_a_locked_service_is_refused_then_overridden_and_a_rollback_still_goes_through(
        example_config: Config, tmp_path: Path) -> None:
    async with scenario(fast(example_config, min_requests=5), tmp_path, requests_per_s=60) as fleet:
        stable = fleet.serving_revision(SERVICE)
        await fleet.command("oncall", f"/lock {SERVICE} for 2h retraining the model")
        await fleet.wait_for("viewer", told("<@U07ONCALL01> locked *prediction-worker* until",
                                            "retraining the model"))

        await fleet.command("lead", f"/status {SERVICE}")
        shown = text_of(await fleet.wait_for("lead", lambda m: "Change control" in text_of(m)))
        assert "*prediction-worker* locked by <@U07ONCALL01>" in shown and "retraining the model" in shown

        await fleet.command("lead", f"/deploy {SERVICE} tag=v3")
        refusal = await fleet.wait_for("lead", told("is locked by <@U07ONCALL01> until"))
        assert "retraining the model" in refusal["text"] and "UTC" in refusal["text"]
        assert f'`/deploy {SERVICE} override="why"`' in refusal["text"] and f"/unlock {SERVICE}" in refusal["text"]
        assert await asyncio.to_thread(fleet.bot.runtime.store.rollouts, service=SERVICE) == []
        refused = [detail for user, outcome, detail in await audit_rows(fleet, "deploy") if outcome == "refused"]
        assert len(refused) == 1 and "locked by <@U07ONCALL01>" in refused[0], "the refusal is audited"

        await fleet.command("lead", f'/deploy {SERVICE} tag=v3 override="odds feed fix before tip-off"')
        announced = await fleet.wait_for("viewer", told("<@U07LEAD0001> overrode change control",
                                                        "odds feed fix before tip-off", "locked by <@U07ONCALL01>"))
        assert announced["ts"], "posted in the deploy channel, where everyone sees it"
        (override,) = await audit_rows(fleet, "override")
        assert override[:2] == ("U07LEAD0001", "ok") and "odds feed fix before tip-off" in override[2]
        running = await fleet.rollout_state(SERVICE, "analysing")
        drawn = text_of(await fleet.rollout_message(running))
        assert "locked by" in drawn and "retraining the model" in drawn, "the rollout's message shows the lock"

        await fleet.command("lead", f"/rollback {SERVICE}")
        done = await fleet.rollout_state(SERVICE, "rolled_back")
        assert done.rollout.id == running.rollout.id and fleet.routed(SERVICE) == {stable: 100}

        await fleet.command("lead", "/lock nba-grading-service grading backfill")
        first = await fleet.wait_for("viewer", told("<@U07LEAD0001> locked *nba-grading-service*", "backfill"))
        await fleet.command("oncall", "/unlock nba-grading-service")
        kept = await fleet.wait_for("oncall", told("Breaking someone else's lock needs the *lead* role"))
        assert "ask <@U07LEAD0001> to `/unlock nba-grading-service`" in kept["text"]

        await fleet.command("lead", "/lock nba-grading-service for 1h grading backfill, second pass")
        second = await fleet.wait_for("viewer", told("locked *nba-grading-service*", "second pass"))
        dialog = await unlock(fleet, "lead", first, confirmed=False)
        assert dialog["error"] == "confirmation_required" and dialog["confirm"]["title"]["text"] == (
            "Unlock nba-grading-service?"), "Slack asks first and sends nothing"
        assert (await unlock(fleet, "lead", first))["status"] == 200
        stale = await fleet.wait_for("lead", told("That button was for an earlier lock on *nba-grading-service*"))
        assert "second pass" in stale["text"], "the lock taken since is named, and kept"
        assert (await unlock(fleet, "lead", second))["status"] == 200
        await fleet.wait_for("viewer", told("<@U07LEAD0001> unlocked *nba-grading-service*"))
        await fleet.command("lead", f"/unlock {SERVICE} the retraining is done")
        await fleet.wait_for("viewer", told("<@U07LEAD0001> broke <@U07ONCALL01>'s lock on *prediction-worker*",
                                            "the retraining is done"))
        assert [o for _, o, detail in await audit_rows(fleet, "override") if "broke" in detail] == ["ok"]


async def test_a_freeze_window_holds_a_canary_at_its_stage_boundary_while_a_rollback_goes_through(
        example_config: Config, tmp_path: Path) -> None:
    """The window starts a few seconds in, while the canary is at its first stage (entered about three seconds after
    the deploy: its candidate is checked first); the stage's window is long enough to pass only after it started."""
    starts = datetime.now(UTC) + timedelta(seconds=6)
    freeze = FreezeWindow(name="pre-game", start=starts, end=starts + timedelta(hours=1),
                          timezone="America/New_York", services=(SERVICE,), reason="tonight's props")
    config = fast(example_config, window_s=4.0, min_requests=5).model_copy(update={"freezes": (freeze,)})
    async with scenario(config, tmp_path, requests_per_s=60) as fleet:
        stable = fleet.serving_revision(SERVICE)
        await fleet.command("oncall", f"/deploy {SERVICE} tag=v3")
        first = await fleet.rollout_state(SERVICE, "analysing")
        assert first.rollout.stage == 0 and datetime.now(UTC) < starts, "the canary reached its first stage first"

        held = await fleet.rollout_state(SERVICE, "paused", timeout=20)
        candidate = held.rollout.candidate
        assert fleet.routed(SERVICE) == {stable: 95, candidate: 5}, "traffic stays at the first stage"
        assert max(split.get(candidate, 0) for split in fleet.world.run.traffic_history(SERVICE)) == 5
        thread = "\n".join(text_of(m) for m in await fleet.thread(held))
        assert "stage 5% passed" in thread and "freeze window `pre-game`" in thread
        assert f'/resume {SERVICE} override="why"' in thread and f"`/resume {SERVICE}` once the window" in thread

        await fleet.command("viewer", "/status")
        status = text_of(await fleet.wait_for("viewer", lambda m: "Change control" in text_of(m)))
        assert "*frozen* for prediction-worker: freeze window `pre-game`" in status

        await fleet.command("oncall", f"/resume {SERVICE}")
        refused = await fleet.wait_for("oncall", told("is in freeze window `pre-game`"))
        assert 'override="why"' in refused["text"]

        await fleet.command("oncall", f"/rollback {SERVICE}")
        done = await fleet.rollout_state(SERVICE, "rolled_back")
        assert done.rollout.id == held.rollout.id and fleet.routed(SERVICE) == {stable: 100}
