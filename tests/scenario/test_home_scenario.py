"""The App Home tab and the Events API it rides on: Slack verifies the bot's Request URL; a person opening the tab
gets the fleet, the rollout in progress and the open incident; its Roll back button asks first and then moves the
traffic back through the same pipeline as /rollback; and an event Slack delivers twice is acted on once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.config import Config
from sandbox.blockkit_text import text_of
from tests.scenario.harness import Scenario, fast, scenario
from tests.scenario.test_incident_scenario import alerting


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    # A stage window of a minute: the rollout is still in progress when the tab is opened and clicked.
    config = alerting(fast(example_config, window_s=60.0, progress_deadline=600.0))
    async with scenario(config, tmp_path_factory.mktemp("home"), requests_per_s=20) as running:
        yield running


async def open_home(fleet: Scenario, user: str, **extra: Any) -> dict[str, Any]:
    response = await fleet.http.post(f"{fleet.user_side}/home", json={"user": user, **extra})
    response.raise_for_status()
    opened: dict[str, Any] = response.json()
    return opened


def seen(view: dict[str, Any]) -> str:
    return text_of({"blocks": view["blocks"]})


async def test_slack_verifies_the_request_url(fleet: Scenario) -> None:
    answer = (await fleet.http.post(f"{fleet.user_side}/events/verify")).json()
    assert answer == {"verified": True, "status": 200, "error": None}


async def test_an_event_slack_delivers_again_is_acted_on_once(fleet: Scenario) -> None:
    workspace, viewer = fleet.world.workspace, fleet.world.workspace.user_named("viewer").id
    opened = await open_home(fleet, "viewer", duplicates=2)
    assert [d["status"] for d in opened["deliveries"]] == [200, 200, 200], "every delivery is acknowledged"
    assert [d["retry"] for d in opened["deliveries"]] == [0, 1, 2]
    assert opened["updated"] and "chatops" in seen(opened["view"])
    published = workspace.homes.version(viewer)
    await asyncio.sleep(1.5)  # a second publish would have come by now
    assert workspace.homes.version(viewer) == published == 1, "one views.publish for one event delivered thrice"
    again = await open_home(fleet, "viewer")  # a new opening is a new event
    assert again["updated"] and workspace.homes.version(viewer) == 2


async def test_the_home_tab_shows_the_rollout_and_incident_and_rolls_back_after_confirming(fleet: Scenario) -> None:
    service, broken = "prediction-coordinator", "prediction-worker"
    stable = fleet.serving_revision(service)
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    analysing = await fleet.rollout_state(service, "analysing", timeout=30)
    await fleet.behave(fleet.serving_revision(broken), failing_checks=["gcs_model_file"])

    async def incident_open() -> bool:
        return any(s.incident.service == broken
                   for s in await asyncio.to_thread(fleet.bot.runtime.incidents.incidents.open_incidents))

    await fleet.until(incident_open, 20, f"an open incident of {broken}")
    view = (await open_home(fleet, "oncall"))["view"]
    shown = seen(view)
    assert f"rollout #{analysing.rollout.id}" in shown and service in shown
    assert f"*{broken}* · incident #" in shown and "*not acknowledged*" in shown
    assert "`rollback`" in shown, "what the viewer may do"
    rollback = next(e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]
                    if e["action_id"] == "rollout_rollback")
    assert stable in rollback["confirm"]["text"]["text"], "the dialog names the revision traffic goes back to"
    click = {"user": "oncall", "view": "home", "action_id": "rollout_rollback", "value": rollback["value"]}

    unconfirmed = await fleet.http.post(f"{fleet.user_side}/actions", json=click)
    assert unconfirmed.status_code == 409 and unconfirmed.json()["error"] == "confirmation_required"
    await asyncio.sleep(0.5)
    assert fleet.routed(service).get(stable, 0) < 100, "nothing moved without the confirmation"

    confirmed = await fleet.http.post(f"{fleet.user_side}/actions", json={**click, "confirmed": True})
    assert confirmed.json()["status"] == 200

    async def back() -> bool:
        return fleet.routed(service) == {stable: 100}

    await fleet.until(back, 20, "all traffic back on the stable revision")
    ended = await fleet.rollout_state(service, "rolled_back", timeout=20)
    assert ended.rollout.state.value == "rolled_back"
    audit = await asyncio.to_thread(fleet.bot.runtime.store.audit, limit=5, user_id=fleet.world.workspace
                                    .user_named("oncall").id)
    assert any(e.command == "button:rollout_rollback" and e.outcome == "ok" for e in audit), "audited as a click"

    async def refreshed() -> bool:
        tab = (await fleet.http.get(f"{fleet.user_side}/home", params={"user": "oncall"})).json()["view"]
        return "Your last click, *rollback*" in seen(tab) and f"rollout #{analysing.rollout.id}" not in seen(tab)

    await fleet.until(refreshed, 15, "the tab refreshed: the click's outcome, the rollout no longer in progress")


async def test_a_viewer_is_refused_from_the_home_tab_as_from_the_channel(fleet: Scenario) -> None:
    service = "prediction-coordinator"
    await fleet.command("oncall", f"/deploy {service} tag=v2")
    stored = await fleet.rollout_state(service, "analysing", timeout=30)
    view = (await open_home(fleet, "viewer"))["view"]
    rollback = next(e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]
                    if e["action_id"] == "rollout_rollback")
    clicked = await fleet.http.post(f"{fleet.user_side}/actions", json={
        "user": "viewer", "view": "home", "action_id": "rollout_rollback", "value": rollback["value"],
        "confirmed": True})
    assert clicked.json()["status"] == 200

    async def told() -> bool:
        tab = (await fleet.http.get(f"{fleet.user_side}/home", params={"user": "viewer"})).json()["view"]
        return "*refused*" in seen(tab)

    await fleet.until(told, 10, "the refusal shown in the viewer's tab")
    assert (await fleet.rollout_state(service, "analysing")).rollout.id == stored.rollout.id, "still in progress"
    await fleet.command("oncall", f"/rollback {service}")
    await fleet.rollout_state(service, "rolled_back", timeout=20)


async def test_a_lock_is_unlocked_from_the_home_tab_by_its_holder_and_refused_to_someone_without_override(
        fleet: Scenario) -> None:
    """A Home tab click has no response_url: what became of it is shown at the top of the tab, from its audit row."""
    service = "nba-grading-service"
    await fleet.command("lead", f"/lock {service} for 2h grading backfill")

    async def unlock_button(user: str) -> dict[str, Any]:
        view = (await open_home(fleet, user))["view"]
        found = [b["accessory"] for b in view["blocks"] if b.get("accessory", {}).get("action_id") == "lock_unlock"]
        return found[0] if found else {}

    async def shown() -> bool:
        return bool(await unlock_button("oncall"))

    await fleet.until(shown, 10, "the lock in the Home tab")
    button = await unlock_button("oncall")
    assert button["value"].startswith(f"{service}@") and button["confirm"]["title"]["text"] == f"Unlock {service}?"

    async def clicked(user: str) -> None:
        answer = await fleet.http.post(f"{fleet.user_side}/actions", json={
            "user": user, "view": "home", "action_id": "lock_unlock", "value": button["value"], "confirmed": True})
        assert answer.json()["status"] == 200

    async def tab_says(user: str, words: str) -> bool:
        tab = (await fleet.http.get(f"{fleet.user_side}/home", params={"user": user})).json()["view"]
        return words in seen(tab)

    await clicked("oncall")
    await fleet.until(lambda: tab_says("oncall", "*override* nba-grading-service: *refused*"), 10,
                      "the refusal in the on-call's tab")
    assert await unlock_button("lead"), "the lock holds"
    await clicked("lead")
    await fleet.wait_for("viewer", lambda m: f"<@U07LEAD0001> unlocked *{service}*" in m["text"])
    await fleet.until(lambda: tab_says("lead", "Your last click, *lock* nba-grading-service: *ok*"), 10,
                      "the outcome in the lead's tab")
