"""The post-deploy watch: a promotion that goes bad afterwards is told in its rollout's thread, with a Roll back
button that does what /rollback does while the revision it warned about still serves. The bot itself does not roll
back after promotion."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.config import Config
from sandbox.blockkit_text import text_of
from tests.scenario.harness import Scenario, fast, scenario


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    async with scenario(fast(example_config, min_requests=5, watch=20.0), tmp_path_factory.mktemp("watch"),
                        requests_per_s=60) as running:
        yield running


async def test_a_promotion_that_degrades_is_told_once_in_its_thread_and_rolled_back_by_button(
        fleet: Scenario) -> None:
    service = "prediction-coordinator"
    stable = fleet.serving_revision(service)
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    promoted = await fleet.rollout_state(service, "promoted", "rolled_back", "paused", timeout=60)
    assert promoted.rollout.state.value == "promoted", promoted.rollout.reason
    candidate = promoted.rollout.candidate
    writes = fleet.world.run.counts["UpdateService"]
    await fleet.behave(candidate, error_rate=0.5)

    async def warned() -> bool:
        return any("looks worse since" in text_of(m) for m in await fleet.thread(promoted))

    await fleet.until(warned, 30, "the watch's warning in the rollout's thread")
    warning = next(m for m in await fleet.thread(promoted) if "looks worse since" in text_of(m))
    assert "error lines in" in text_of(warning) and f"roll back to `{stable}`" in text_of(warning)
    assert fleet.routed(service) == {candidate: 100}, "after promotion the bot only says so"
    assert fleet.world.run.counts["UpdateService"] == writes
    button = next(e for b in warning["blocks"] if b["type"] == "actions" for e in b["elements"])
    assert button["text"]["text"] == f"Roll back {candidate}", "the button names the revision it warns about"

    async def click() -> None:
        clicked = await fleet.http.post(f"{fleet.user_side}/actions", json={
            "user": "oncall", "channel": "deploys", "message_ts": warning["ts"], "action_id": button["action_id"],
            "value": button["value"], "confirmed": True})
        assert clicked.status_code == 200

    await click()

    async def back() -> bool:
        return fleet.routed(service) == {stable: 100}

    await fleet.until(back, 20, "all traffic back on the stable revision")
    assert sum("looks worse since" in text_of(m) for m in await fleet.thread(promoted)) == 1, "said once"
    rolled_back = fleet.world.run.counts["UpdateService"]
    after = await fleet.latest_ts("oncall")
    await click()  # the same warning again, once what it warned about no longer serves
    refused = await fleet.wait_for("oncall", lambda m: "no longer serves" in text_of(m), after=after)
    assert f"`{candidate}` no longer serves {service}" in text_of(refused)
    assert f"`{stable}` 100% serves now" in text_of(refused) and "Nothing was done" in text_of(refused)
    await asyncio.sleep(1)
    assert fleet.world.run.counts["UpdateService"] == rolled_back and fleet.routed(service) == {stable: 100}
