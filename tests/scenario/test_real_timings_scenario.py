"""Canaries on Cloud Run's own timings, and a canary that fails quietly.

Cloud Run takes seconds to route a change and to start a revision (sandbox/cloudrun_rules.py CloudRunLimits:
5 s and, here, 10 s). A revision that starts faster than its routes settle is ready before its tag URL is in
`trafficStatuses`: every check of the candidate, built-in or the service's own, waits for it. The plans' windows
are shortened; the Cloud Run timings are not.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from bot.config import Config
from sandbox.blockkit_text import text_of
from tests.scenario.harness import fast, scenario

ROUTE_MS, REVISION_START_MS = 5_000, 10_000


async def test_a_good_image_of_every_service_is_promoted_when_cloud_run_routes_in_seconds(
        example_config: Config, tmp_path: Path) -> None:
    config = fast(example_config, min_requests=3, progress_deadline=60.0)
    async with scenario(config, tmp_path, route_ms=ROUTE_MS, start_ms=REVISION_START_MS,
                        requests_per_s=60) as world:
        figures = world.world.limits.to_json()["cloud_run"]
        assert (figures["route_ms"], figures["revision_start_ms"]) == (ROUTE_MS, REVISION_START_MS)
        services = sorted(config.services)
        stables = {service: world.serving_revision(service) for service in services}
        # prediction-worker's image starts in 1 s: it is ready 4 s before Cloud Run routes its tag URL, when its
        # own HTTP check (deep-health) has no URL to call yet
        await world.declare(f"{config.services['prediction-worker'].image}:v5", start_ms=1_000)
        for service in services:
            answer = await world.command("oncall", f"/deploy {service} canary tag=v5")
            assert answer["status"] == 200 and "Deploying" in answer["body"], answer

        async def ended() -> bool:
            """Every rollout over, as the store has it (the threads then post at Slack's pace, not waited for)."""
            rows = await asyncio.to_thread(world.bot.runtime.store.rollouts)
            return len(rows) == len(services) and all(r.rollout.state.ended and r.rollout.pending is None
                                                      for r in rows)

        await world.until(ended, timeout=90, what="every rollout ending")
        for stored in await asyncio.to_thread(world.bot.runtime.store.rollouts):
            rollout = stored.rollout
            assert rollout.state.value == "promoted", f"{rollout.service}: {rollout.state.value}: {rollout.reason}"
            assert world.routed(rollout.service) == {rollout.candidate: 100} and world.tags(rollout.service) == {}
            assert rollout.stable == stables[rollout.service]
            assert [r.outcome for r in rollout.results] == ["pass"] * 3, rollout.service
            shares = [split.get(rollout.candidate, 0) for split in world.world.run.traffic_history(rollout.service)]
            assert shares == [0, *rollout.plan.stages, 100], "checked at 0% first, then one write per stage"


async def test_a_canary_failing_every_one_of_its_few_requests_is_rolled_back_though_its_code_logs_nothing(
        example_config: Config, tmp_path: Path) -> None:
    """Fewer requests than min_requests (20), every one a 500 that only Cloud Run's request log records
    (`run.googleapis.com/requests`, `httpRequest.status`: https://cloud.google.com/run/docs/logging): more 5xx
    than 99% of 20 allows (none), so the stage fails; it is never promoted, nor left paused for lack of traffic."""
    service = "prediction-worker"
    async with scenario(fast(example_config), tmp_path, requests_per_s=20) as world:
        await world.declare(f"{world.world.config.services[service].image}:v6-quiet", error_rate=1.0,
                            silent_errors=True)
        stable = world.serving_revision(service)
        await world.command("oncall", f"/deploy {service} tag=v6-quiet")
        done = await world.rollout_state(service, "rolled_back", "promoted", "paused", timeout=30)
        assert done.rollout.state.value == "rolled_back", done.rollout.reason
        assert world.routed(service) == {stable: 100} and world.tags(service) == {}
        assert [r.percent for r in done.rollout.results] == [5]
        failed = re.search(r"success rate: (\d+) of (\d+) requests failed \(5xx, request logs\); 99% of 20 allows 0",
                           done.rollout.reason)
        assert failed is not None, done.rollout.reason
        assert failed[1] == failed[2] and int(failed[2]) < 20, "every request failed, too few to judge a rate"
        logged = world.world.logs.select([f"projects/{world.world.config.project}"],
                                         f'resource.labels.revision_name="{done.rollout.candidate}" AND '
                                         'NOT log_id("run.googleapis.com/requests")', False)
        assert logged == [], "the candidate's code logged nothing"
        replies = "\n".join(text_of(m) for m in await world.thread(done))
        assert "stage 5% failed" in replies and "requests failed (5xx" in replies
