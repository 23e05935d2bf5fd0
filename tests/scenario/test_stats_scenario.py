"""`/stats` on the sandbox: after a rolled-back and then a promoted deploy, a signed `/stats <service>` shows DORA's
five figures (https://dora.dev/guides/dora-metrics-four-keys/), the lead time from the upload time Artifact Registry
reports for the promoted image (https://cloud.google.com/artifact-registry/docs/reference/rest/v1/
projects.locations.repositories.dockerImages), and a second `/stats` reads the registry no more."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import Config
from sandbox.blockkit_text import text_of
from tests.scenario.harness import Scenario, fast, scenario

SERVICE = "nba-grading-service"


async def stats(fleet: Scenario, text: str) -> str:
    after = await fleet.latest_ts("oncall")
    answer = await fleet.command("oncall", f"/stats {text}")
    assert answer["status"] == 200
    return text_of(await fleet.wait_for("oncall", lambda m: "DORA figures" in text_of(m), after=after))


async def test_stats_shows_the_five_figures_with_the_lead_time_from_the_registry(example_config: Config,
                                                                                 tmp_path: Path) -> None:
    config = fast(example_config)
    async with scenario(config, tmp_path) as fleet:
        repository = config.services[SERVICE].image
        # A canary someone rolls back as soon as it started, then a fix someone promotes straight to 100%: people
        # acting, so the test waits for no analysis window.
        await fleet.command("oncall", f"/deploy {SERVICE} tag=v8-broken")
        await fleet.rollout_state(SERVICE, "verifying")
        await fleet.command("oncall", f"/rollback {SERVICE}")
        failed = await fleet.rollout_state(SERVICE, "rolled_back")
        uploaded = datetime.now(UTC) - timedelta(hours=2)
        (await fleet.http.post(f"{fleet.control}/images", json={
            "image": f"{repository}:v9", "upload_time": uploaded.isoformat()})).raise_for_status()
        await fleet.command("oncall", f"/deploy {SERVICE} tag=v9")
        await fleet.rollout_state(SERVICE, "verifying")
        await fleet.command("oncall", f"/promote {SERVICE} full")
        fixed = await fleet.rollout_state(SERVICE, "promoted")
        reads = len(fleet.world.registry.calls)

        shown = await stats(fleet, SERVICE)
        assert f"DORA figures · {SERVICE} · last 7 d" in shown
        assert "*Deployment frequency*: 2 deploys in 7 d · 0.3 a day" in shown
        assert fixed.rollout.ended_at is not None
        lead = fixed.rollout.ended_at - uploaded
        assert timedelta(hours=2) < lead < timedelta(hours=2, minutes=1)
        assert "*Lead time for changes*: median 2 h, image upload to promotion (1 of 1 promotion)" in shown
        assert "*Change failure rate*: 50% (1 of 2 rolled back, failed or undone by `/rollback`)" in shown
        recovered = re.search(r"\*Failed deployment recovery time\*: median (\d+) s, deploy start to a good "
                              r"revision serving \(1 failed deploy\)", shown)
        assert recovered is not None, shown
        assert failed.rollout.ended_at is not None
        assert int(recovered.group(1)) >= int((failed.rollout.ended_at - failed.rollout.created_at).total_seconds())
        assert "*Deployment rework rate*: 50% (1 of 2 started within 1 d of a failure or during an incident)" in shown
        assert len(fleet.world.registry.calls) == reads + 1, "one read: the promoted image's"

        fleet_wide = await stats(fleet, "30d")
        assert "DORA figures · fleet · last 30 d" in fleet_wide
        assert f"*{SERVICE}*: 2 deploys" in fleet_wide and "No deploys: " in fleet_wide
        assert len(fleet.world.registry.calls) == reads + 1, "the upload time came from the store, not the registry"
