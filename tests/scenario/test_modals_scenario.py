"""Modals and confirmations, through Slack's user side: `/deploy` with no arguments opens a form whose problems
show on the field and whose Submit runs the typed command's path; a Roll back button asks first and does nothing
until the person confirms (https://docs.slack.dev/reference/block-kit/composition-objects/
confirmation-dialog-object)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.config import Config
from bot.render.modals import (
    IMAGE_ACTION,
    IMAGE_BLOCK,
    OVERRIDE_ACTION,
    OVERRIDE_BLOCK,
    PREVIEW_ACTION,
    REVISION_ACTION,
    REVISION_BLOCK,
    SERVICE_ACTION,
    SERVICE_BLOCK,
)
from tests.scenario.harness import Scenario, fast, scenario


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    async with scenario(fast(example_config, window_s=3.0), tmp_path_factory.mktemp("modals")) as running:
        yield running


async def modal(fleet: Scenario, path: str, **spec: Any) -> dict[str, Any]:
    response = await fleet.http.post(f"{fleet.user_side}/views/{path}", json={"user": "oncall", **spec})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_the_deploy_modal_refuses_a_foreign_image_on_the_field_then_deploys(fleet: Scenario) -> None:
    service = "prediction-worker"
    stable = fleet.serving_revision(service)
    before = await fleet.latest_ts("oncall")
    opened = await fleet.command("oncall", "/deploy")
    assert opened["status"] == 200 and opened["error"] is None
    views = (await fleet.http.get(f"{fleet.user_side}/views", params={"user": "oncall"})).json()["views"]
    assert [v["callback_id"] for v in views] == ["deploy_modal"]

    typed = await modal(fleet, "suggest", block_id=SERVICE_BLOCK, action_id=SERVICE_ACTION, value="PREDICTION-W")
    offered = [o["value"] for o in typed["options"]]
    assert offered == sorted(offered, key=lambda s: not s.startswith("prediction-w"))
    assert set(offered) == {s for s in fleet.bot.runtime.config.services if "prediction-w" in s}
    await modal(fleet, "fill", block_id=SERVICE_BLOCK, action_id=SERVICE_ACTION, value=service)

    await modal(fleet, "fill", block_id=IMAGE_BLOCK, action_id=IMAGE_ACTION, value="docker.io/evil/worker:v3")
    refused = await modal(fleet, "submit")
    assert refused["status"] == 200 and refused["error"] is None
    [still_open] = refused["views"]
    assert set(still_open["errors"]) == {IMAGE_BLOCK}
    assert "docker.io/evil/worker is not one of them" in still_open["errors"][IMAGE_BLOCK]
    assert await fleet.latest_ts("oncall") == before, "a problem shows on the field, never as a message"
    assert fleet.routed(service) == {stable: 100}

    await modal(fleet, "fill", block_id=IMAGE_BLOCK, action_id=IMAGE_ACTION, value="v3")
    pressed = await modal(fleet, "press", action_id=PREVIEW_ACTION)
    assert pressed["status"] == 200
    shown: list[dict[str, Any]] = []

    async def planned() -> bool:
        shown[:] = (await fleet.http.get(f"{fleet.user_side}/views", params={"user": "oncall"})).json()["views"]
        return "Stable now" in str(shown[0]["blocks"])

    await fleet.until(planned, 10, "the dry-run plan drawn into the modal")
    plan = next(b for b in shown[0]["blocks"] if b["block_id"] == "plan")["text"]["text"]
    assert f"*Stable now:* `{stable}`" in plan and "/prediction-worker:v3`" in plan
    assert shown[0]["state"]["values"][IMAGE_BLOCK][IMAGE_ACTION]["value"] == "v3", "the update kept the input"

    submitted = await modal(fleet, "submit")
    assert submitted["error"] is None and submitted["views"] == [], "a valid submit closes the modal"
    running = await fleet.rollout_state(service, "analysing", "promoted", timeout=30)
    assert running.rollout.image.endswith("/prediction-worker:v3") and running.rollout.requested_by
    assert running.rollout.candidate in fleet.routed(service), "Cloud Run routes traffic to the candidate"
    audit = await fleet.wait_for("oncall", lambda m: "Deploying" in m["text"] and service in m["text"])
    assert audit["kind"] == "ephemeral", "answered where /deploy was typed, as the typed command is"


async def test_a_deploy_form_goes_past_someone_elses_lock_only_with_a_reason_from_someone_who_may(
        fleet: Scenario) -> None:
    """The form's override field is `override="why"` typed: empty, the lock refuses the deploy as it refuses the
    typed command; with the lead's reason, it goes ahead and the deploy channel is told who went past what, and why."""
    service = "nba-phase4-precompute-processors"
    stable = fleet.serving_revision(service)
    await fleet.command("oncall", f"/lock {service} for 1h backfill running")
    await fleet.wait_for("oncall", lambda m: f"Locked *{service}*" in m["text"])
    for why in ("", "odds feed fix, “before” tip-off"):
        before = await fleet.latest_ts("lead")
        assert (await fleet.command("lead", "/deploy"))["status"] == 200
        await modal(fleet, "suggest", user="lead", block_id=SERVICE_BLOCK, action_id=SERVICE_ACTION, value="phase4")
        await modal(fleet, "fill", user="lead", block_id=SERVICE_BLOCK, action_id=SERVICE_ACTION, value=service)
        await modal(fleet, "fill", user="lead", block_id=IMAGE_BLOCK, action_id=IMAGE_ACTION, value="v3")
        if why:
            await modal(fleet, "fill", user="lead", block_id=OVERRIDE_BLOCK, action_id=OVERRIDE_ACTION, value=why)
        assert (await modal(fleet, "submit", user="lead"))["views"] == [], "the form closes either way"
        if not why:
            refused = await fleet.wait_for("lead", lambda m: "is locked by <@U07ONCALL01>" in m["text"], after=before)
            assert refused["kind"] == "ephemeral" and 'override="why"' in refused["text"]
            assert fleet.routed(service) == {stable: 100}
    told = await fleet.wait_for("viewer", lambda m: "<@U07LEAD0001> overrode change control" in m["text"])
    assert 'odds feed fix, "before" tip-off' in told["text"] and "backfill running" in told["text"]
    running = await fleet.rollout_state(service, "analysing", "promoted", timeout=30)
    assert running.rollout.requested_by == "U07LEAD0001" and running.rollout.image.endswith(":v3")


async def test_roll_back_asks_first_and_moves_traffic_only_once_confirmed(fleet: Scenario) -> None:
    service = "nba-phase3-analytics-processors"
    stable = fleet.serving_revision(service)
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    running = await fleet.rollout_state(service, "analysing")
    message = await fleet.rollout_message(running)
    back = next(e for b in message["attachments"][0]["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == "rollout_rollback")
    click = {"user": "oncall", "channel": "deploys", "message_ts": running.message_ts,
             "action_id": "rollout_rollback", "value": back["value"]}
    writes = fleet.world.run.counts["UpdateService"]

    unconfirmed = await fleet.http.post(f"{fleet.user_side}/actions", json=click)
    assert unconfirmed.status_code == 409 and unconfirmed.json()["error"] == "confirmation_required"
    dialog = unconfirmed.json()["confirm"]["text"]["text"]
    assert dialog == f"Send 100% of {service} to {stable}; {running.rollout.candidate} stops serving."
    assert fleet.world.run.counts["UpdateService"] == writes and fleet.routed(service) != {stable: 100}

    confirmed = await fleet.http.post(f"{fleet.user_side}/actions", json={**click, "confirmed": True})
    assert confirmed.json()["status"] == 200
    await fleet.rollout_state(service, "rolled_back")
    assert fleet.routed(service) == {stable: 100}


async def test_the_rollback_modal_lists_ready_revisions_and_sends_traffic_to_the_one_picked(fleet: Scenario) -> None:
    service = "nba-grading-service"
    serving = fleet.serving_revision(service)
    opened = await fleet.command("oncall", "/rollback")
    assert opened["status"] == 200 and opened["error"] is None
    await modal(fleet, "suggest", block_id=SERVICE_BLOCK, action_id=SERVICE_ACTION, value="grading")
    picked = await modal(fleet, "fill", block_id=SERVICE_BLOCK, action_id=SERVICE_ACTION, value=service)
    assert picked["status"] == 200, "picking the service tells the bot (dispatch_action)"
    shown: list[dict[str, Any]] = []

    async def listed() -> bool:
        shown[:] = (await fleet.http.get(f"{fleet.user_side}/views", params={"user": "oncall"})).json()["views"]
        return any(b["block_id"] == REVISION_BLOCK for b in shown[0]["blocks"])

    await fleet.until(listed, 10, "the service's revisions listed in the modal")
    picker = next(b for b in shown[0]["blocks"] if b["block_id"] == REVISION_BLOCK)["element"]
    offered = {o["value"]: o["text"]["text"] for o in picker["options"]}
    ready = {r.name for r in await fleet.bot.runtime.cloudrun.revisions_of(service) if r.ready}
    assert set(offered) == ready - {serving} and offered, "every Ready revision but the serving one"
    target = next(iter(offered))
    assert offered[target].startswith(f"{target} · ")
    await modal(fleet, "fill", block_id=REVISION_BLOCK, action_id=REVISION_ACTION, value=target)

    submitted = await modal(fleet, "submit")
    assert submitted["error"] is None and submitted["views"] == []

    async def moved() -> bool:
        return fleet.routed(service) == {target: 100}

    await fleet.until(moved, 20, f"all of {service}'s traffic on {target}")
