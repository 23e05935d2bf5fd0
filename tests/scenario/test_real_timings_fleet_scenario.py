"""The fleet on Cloud Run's own timings (a traffic change routes in 5 s, a revision starts in 10 s:
sandbox/cloudrun_rules.py CloudRunLimits): a good image of every service is promoted, a canary that fails quietly
(few requests, every one a 500 its code does not log) is rolled back, and SIGTERM during a slow write with three
instances on one PostgreSQL keeps that lease and makes each write once. The rollbacks that race chatops' own
writes are in test_real_timings_scenario.py."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import yaml

from bot.config import Config
from sandbox.blockkit_text import text_of
from sandbox.runner import sandbox_config
from tests import figures
from tests.conftest import EXAMPLE_CONFIG
from tests.scenario.harness import fast, scenario
from tests.scenario.test_real_timings_scenario import ROUTE_MS, START_MS
from tests.scenario.test_scale_out_scenario import WRITES, hits, running_cluster


async def test_sigterm_during_a_slow_write_with_three_instances_keeps_its_lease_and_each_write_once(
        tmp_path: Path) -> None:
    """Three instances on one PostgreSQL, Cloud Run on its own timings. The 100% stage's write takes 3.5 s to
    reach Cloud Run (under the bot's 4 s google_timeout, so its client still waits, then waits for the routing)
    and SIGTERM comes to the instance holding the rollout meanwhile: its tick is cancelled after 3 s with the
    write's thread still running, so that lease is kept (the others are given up); no other instance writes while
    that write is in flight, and the rollout still makes each write once and promotes."""
    config = sandbox_config(EXAMPLE_CONFIG, tmp_path, window_s=2.0)  # lease 10 s, google_timeout 4 s
    data = yaml.safe_load(config.read_text())
    data["defaults"]["canary"].update({"stages": [5, 100], "min_requests": 3, "progress_deadline": 120})
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    service = "prediction-coordinator"
    async with running_cluster(config, tmp_path, 3, schema="chatops_sigterm", start_ms=START_MS,
                               route_ms=ROUTE_MS) as cluster:
        world, bots = cluster.world, cluster.bots
        await cluster.command(f"/deploy {service} tag=v3")
        at_five = await cluster.reach(service, lambda r: r.state == "analysing" and cluster.share(
            service, r.rollout.candidate) == 5, "analysing at 5%", timeout=90)
        candidate = at_five.rollout.candidate
        slow = (await cluster.control("POST", "/faults", {"method": "UpdateService", "latency_ms": 3500,
                                                          "count": 1}))["id"]
        held = await cluster.reach(service, lambda r: hits(world, slow) >= 1, "the 100% write in flight")
        (holder,) = [bot for bot in bots if bot.instance == held.lease_owner]
        began = time.time()
        holder.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(holder.process.wait, 10) in (0, -signal.SIGTERM)
        assert "1 kept with a write in flight" in holder.log_path.read_text(), \
            "the write was still in flight when the instance gave its leases up, and its lease was kept"
        figures.count("bot instances stopped (SIGTERM) during a slow write, three on one PostgreSQL")
        done = await cluster.reach(service, lambda r: not r.open, "the rollout finished", timeout=90)
        assert done.state == "promoted" and world.run.routed_share(service) == {candidate: 100}
        assert cluster.history(service, candidate) == [0, 5, 100, 100], "each write made once"
        landed = next(c.at for c in world.run.calls if c.method == "UpdateService" and c.at > began
                      and c.target.endswith(service))
        others = [c for c in world.run.calls if c.method in WRITES and began < c.at < landed]
        assert not others, f"another instance wrote while the slow write was in flight: {others}"


async def test_a_good_image_of_every_service_is_promoted_when_cloud_run_routes_in_seconds(
        example_config: Config, tmp_path: Path) -> None:
    config = fast(example_config, min_requests=3, progress_deadline=60.0)
    async with scenario(config, tmp_path, route_ms=ROUTE_MS, start_ms=START_MS,
                        requests_per_s=60) as world:
        timings = world.world.limits.to_json()["cloud_run"]
        assert (timings["route_ms"], timings["revision_start_ms"]) == (ROUTE_MS, START_MS)
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
